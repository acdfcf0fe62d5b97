"""The page's pure helpers, run by Node.js (which setup.sh installs with npm): the command splitter, the log
frame reader in both shapes, the error reader, and the escrow deposit's call data against eth_abi's."""

from __future__ import annotations

import json
import shutil
import subprocess
from typing import Any

from eth_abi.abi import encode
from eth_utils.crypto import keccak

from dms.api.dashboard import WEB_DIR

SCRIPT = """
const api = await import(process.argv[1] + '/api.js');
const wallet = await import(process.argv[1] + '/wallet.js');
const out = {};
out.split = [
  api.splitCommand('sh -c "echo a; echo b"'), api.splitCommand("echo 'x y'  z"), api.splitCommand('["a b", "c"]'),
  api.splitCommand('a "" b'),
];
try { api.splitCommand('echo "open'); out.unclosed = null; } catch (e) { out.unclosed = e.message; }
out.logs = [
  api.logLines({action: 'log-stream-response', stdout: 'top\\n'}),
  api.logLines({action: 'log-stream-response', stderr: 'err'}),
  api.logLines({action: 'log-stream-response', message: {stdout: 'o', stderr: 'e'}}),
];
const nunet = new api.ApiError(400, {message: 'm', code: 'c', details: [{field: 'body.CPU', message: 'too big'}]});
out.fields = nunet.fields();
out.data = wallet.depositData('0x' + 'ab'.repeat(32), '0x' + '12'.repeat(20), '0x' + '34'.repeat(20));
try { wallet.depositData('0x12', '0x' + '12'.repeat(20), '0x' + '34'.repeat(20)); } catch (e) { out.bad = e.message; }
out.price = [String(wallet.priceWei({estimated_price: 5, estimated_price_wei: '123456789012345678901'})),
             String(wallet.priceWei({estimated_price: 7}))];
out.peers = [
  api.peerRows({message: 'No Content in DHT'}),
  api.peerRows([{peer_id: 'Qm1', is_available: true, tokenomics_addrs: 'addr1x', gpu_info: null,
                 available_resources: {tot_cpu_hz: 2000, ram: 1024, vcpu: 2}}]),
  api.peerRows({peers: [{peer_id: '12D3', connected: true, rtt_ms: 1.5,
                         capacity: {cpu_mhz: 7, executors: ['docker']}}]}),
];
const cp = await import(process.argv[1] + '/cp.js');
const nunetError = (m) => new api.ApiError(400, {message: m});
out.guess = [
  cp.fieldErrors(nunetError('CPU should be between 10% and 90% of the available CPU (520 and 4680)')),
  cp.fieldErrors(nunetError('invalid cardano wallet address')),
  cp.fieldErrors(nunetError('memory should be between 10% and 90% of the available memory (1 and 2)')),
  cp.fieldErrors(nunetError('cardano node requires 10000MB of RAM and 6000MHz CPU and memory')),
  cp.fieldErrors(nunet),
];
const sp = await import(process.argv[1] + '/jobspec.js');
out.env = [sp.parseEnv('A=1\\n\\n B=x=y \\n'), sp.parseEnv('')];
try { sp.parseEnv('A=1\\nnope'); } catch (e) { out.envError = e.message; }
const form = {executor: 'docker', image: ' dms-test/busybox:1 ', command: 'sh -c "cp /inputs/a /outputs/"', module: '',
              args: '', cpu_mhz: '500', cores: '0.5', memory_mb: '64', duration_s: '60', max_price: '1000', env: '',
              target: '', checkpoint: false, cp_path: '/workspace', cp_interval: '5', resume: false};
const inputs = [{source: 'ab'.repeat(32), path: 'a'}, {source: ' https://example.invalid/x ', path: ' b/c '}];
out.bodies = [
  sp.jobBody(form, inputs),
  sp.jobBody({...form, checkpoint: true, cp_interval: '2', resume: true, target: ' 12D3x '}),
  sp.jobBody({...form, executor: 'wasm', module: 'cd'.repeat(32), args: 'alpha "b c"'}, inputs),
];
const problem = (f) => { try { f(); return null; } catch (e) { return [e.field, e.message]; } };
out.formErrors = [
  problem(() => sp.jobBody({...form, executor: 'wasm'})),
  problem(() => sp.jobBody(form, [{source: '', path: 'x'}])),
  problem(() => sp.jobBody({...form, command: 'echo "open'})),
  problem(() => sp.jobBody({...form, env: 'nope'})),
];
out.names = [sp.inputPath('my data (1).csv'), sp.inputPath('..'), sp.inputPath(''), sp.moduleName('hello world.wasm'),
             sp.moduleName('__x.WAT'), sp.moduleName('...')];
out.jobErrors = sp.jobErrors(new api.ApiError(400, {message: 'm', details: [
  {field: 'inputs.0.path', message: 'bad path'}, {field: 'resources.cpu_mhz', message: 'Value error, too big'}]}));
out.online = [api.onlineOf({online: true}), api.onlineOf({is_available: false})];
const frames = await import(process.argv[1] + '/frames.js');
out.frames = [
  {action: 'job-resumed', job_id: 'j', seq: 9,
   detail: {run: 2, compute_provider: '12D3b', checkpoint: 3, reason: 'lost'}},
  {action: 'job-completed', job_id: 'j', seq: 10, detail: {exit_code: 0, outputs: {sha256: 'ab', size: 1}}},
  {action: 'job-failed', job_id: 'j', seq: 3, message: 'input 1 (a) could not be fetched', detail: {reason: 'x'}},
  {action: 'deployment-response', job_id: 'j', seq: 2, message: {success: true, content: 'deployed'}},
].map(frames.frameEntry);
console.log(JSON.stringify(out));
"""


def run_node() -> dict[str, Any]:
    node = shutil.which("node") or shutil.which("nodejs")
    assert node is not None, "Node.js is needed (maint-scripts/setup.sh installs it with npm)"
    done = subprocess.run(
        [node, "--input-type=module", "-e", SCRIPT, "file://" + str(WEB_DIR)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def test_the_pages_helpers() -> None:
    out = run_node()
    assert out["split"] == [["sh", "-c", "echo a; echo b"], ["echo", "x y", "z"], ["a b", "c"], ["a", "", "b"]]
    assert out["unclosed"] == "the command has an unclosed quote"
    assert out["logs"] == [
        [{"stream": "stdout", "text": "top\n"}],
        [{"stream": "stderr", "text": "err"}],
        [{"stream": "stdout", "text": "o"}, {"stream": "stderr", "text": "e"}],
    ]
    assert out["fields"] == {"cpu": "too big"}
    expected = keccak(text="deposit(bytes32,address,address)")[:4] + encode(
        ["bytes32", "address", "address"], [bytes.fromhex("ab" * 32), "0x" + "12" * 20, "0x" + "34" * 20]
    )
    assert out["data"] == "0x" + expected.hex()
    assert "escrow_job_id" in str(out["bad"])
    assert out["price"] == ["123456789012345678901", "7"]
    empty, nunet, dms = out["peers"]
    assert empty == []
    assert nunet[0]["peer_id"] == "Qm1" and nunet[0]["available"] is True
    free = {"cpu_mhz": 2000, "memory_mb": 1024, "cores": 2, "gpus": [], "payment_addr": "addr1x"}
    assert nunet[0]["capacity"] == free
    assert dms[0]["capacity"] == {"cpu_mhz": 7, "executors": ["docker"]} and dms[0]["rtt_ms"] == 1.5
    assert out["online"] == [True, False]
    cpu, wallet, memory, both, detailed = out["guess"]
    assert list(cpu) == ["cpu"] and list(wallet) == ["payment_addr"] and list(memory) == ["memory"]
    assert both == {}  # names two fields: shown above the form, not beside a guess
    assert detailed == {"cpu": "too big"}
    assert out["env"] == [{"A": "1", "B": "x=y"}, {}]
    assert out["envError"] == "line 2: expected KEY=value"
    base = {"executor": "docker", "env": {}, "resources": {"cpu_mhz": 500, "cores": 0.5, "memory_mb": 64},
            "max_price": 1000, "duration_s": 60, "image": "dms-test/busybox:1",
            "command": ["sh", "-c", "cp /inputs/a /outputs/"]}  # fmt: skip
    docker, checkpointed, wasm = out["bodies"]
    assert docker == {**base, "inputs": [{"source": "ab" * 32, "path": "a"},
                                         {"source": "https://example.invalid/x", "path": "b/c"}]}  # fmt: skip
    assert checkpointed == {**base, "checkpoint": {"path": "/workspace", "interval_s": 2}, "resume": "on-failure",
                            "target_peer": "12D3x"}  # fmt: skip
    # a wasm job takes module and args, never image, command, inputs or checkpoints (the daemon refuses the mix)
    assert wasm == {"executor": "wasm", "env": {}, "resources": base["resources"], "max_price": 1000,
                    "duration_s": 60, "module": "cd" * 32, "args": ["alpha", "b c"]}  # fmt: skip
    assert out["formErrors"] == [
        ["module", "choose a module from the registry, or upload a .wasm file"],
        ["inputs.0.source", "still uploading, or no URL given"],
        ["command", "the command has an unclosed quote"],
        ["env", "line 1: expected KEY=value"],
    ]
    assert out["frames"] == [
        {"action": "job-resumed", "seq": 9, "note": "run 2 on 12D3b from checkpoint 3 (lost)"},
        {"action": "job-completed", "seq": 10, "state": "completed", "note": "exit code 0"},
        {"action": "job-failed", "seq": 3, "state": "failed", "note": "input 1 (a) could not be fetched"},
        {"action": "deployment-response", "seq": 2, "state": "running", "note": "deployed"},
    ]
    assert out["names"] == ["my_data_1_.csv", "input", "input", "hello-world", "x", "module"]
    assert out["jobErrors"] == {"path": "bad path", "cpu_mhz": "too big", "inputs.0.path": "bad path",
                                "resources.cpu_mhz": "too big"}  # fmt: skip
