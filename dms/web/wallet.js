// Paying an escrow quote through the browser's Ethereum wallet (EIP-1193, window.ethereum).
// The call is the escrow's deposit(bytes32 job_id, address provider, address arbiter), payable with the price.

// keccak256("deposit(bytes32,address,address)")[:4]; tests/web/test_wallet_selector.py checks it against the ABI.
export const DEPOSIT_SELECTOR = '0x7f8698e6';

const word = (hex) => hex.replace(/^0x/, '').toLowerCase().padStart(64, '0');

export function depositData(escrowJobId, provider, arbiter) {
  for (const [name, v, len] of [['escrow_job_id', escrowJobId, 64], ['provider', provider, 40], ['arbiter', arbiter, 40]]) {
    if (!new RegExp(`^0x[0-9a-fA-F]{${len}}$`).test(v || '')) throw new Error(`the quote's ${name} is not valid: ${v}`);
  }
  return DEPOSIT_SELECTOR + word(escrowJobId) + word(provider) + word(arbiter);
}

// The job's price in wei: dms's own figure (beside NuNet's estimated_price, which is NTX once NuNet's shape is used).
export function priceWei(quote) {
  for (const k of ['estimated_price_wei', 'price_wei']) if (quote[k] !== undefined) return BigInt(quote[k]);
  return BigInt(quote.estimated_price);
}

export async function payWithWallet(ethereum, quote) {
  const [from] = await ethereum.request({ method: 'eth_requestAccounts' });
  const chain = await ethereum.request({ method: 'eth_chainId' });
  if (quote.chain_id && BigInt(chain) !== BigInt(quote.chain_id)) {
    throw new Error(`the wallet is on chain ${BigInt(chain)}, the escrow on chain ${quote.chain_id}`);
  }
  const provider = quote.compute_provider?.payment_addr || quote.compute_provider_addr;
  const tx = {
    from, to: quote.escrow_address, value: '0x' + priceWei(quote).toString(16),
    data: depositData(quote.escrow_job_id, provider, quote.arbiter),
  };
  return ethereum.request({ method: 'eth_sendTransaction', params: [tx] });
}
