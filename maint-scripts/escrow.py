"""Chain chores for the demo on a local anvil: deploy the escrow, fund an address, make a paying account.

  python maint-scripts/escrow.py deploy RPC_URL            -> prints the escrow address
  python maint-scripts/escrow.py fund RPC_URL ADDRESS WEI  -> sends WEI from anvil's first dev account
  python maint-scripts/escrow.py payer RPC_URL WEI         -> a new funded account; prints its private key
  python maint-scripts/escrow.py balance RPC_URL ADDRESS   -> prints the balance in wei

anvil's dev accounts are unlocked, so these send with eth_sendTransaction; never point this at a real chain.
"""

from __future__ import annotations

import sys

from eth_account import Account
from web3 import HTTPProvider, Web3

from dms.payments.contract import load_artifact

REFUND_DELAY_S = 3600


def main(argv: list[str]) -> None:
    cmd, url, *args = argv
    w3 = Web3(HTTPProvider(url))
    dev = w3.eth.accounts[0]

    def send(to: str, wei: int) -> None:
        tx = w3.eth.send_transaction({"from": dev, "to": Web3.to_checksum_address(to), "value": wei})  # type: ignore[typeddict-item]
        w3.eth.wait_for_transaction_receipt(tx, timeout=30)

    if cmd == "deploy":
        art = load_artifact()
        tx = w3.eth.contract(abi=art.abi, bytecode=art.bytecode).constructor(REFUND_DELAY_S).transact({"from": dev})
        print(w3.eth.wait_for_transaction_receipt(tx, timeout=30)["contractAddress"])
    elif cmd == "fund":
        send(args[0], int(args[1]))
    elif cmd == "payer":
        account = Account.create()
        send(account.address, int(args[0]))
        print("0x" + account.key.hex().removeprefix("0x"))
    elif cmd == "balance":
        print(w3.eth.get_balance(Web3.to_checksum_address(args[0])))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
