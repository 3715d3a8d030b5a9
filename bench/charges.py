"""Print, as JSON, what a gateway charged: one key's generations and its account's totals.

Read through NemoRouter's store (the HTTP API pages generations 500 at a time), with the gateway's
own environment (NEMO_DATA_DIR / NEMO_DATABASE_URL ...), after its server has stopped. Run by
bench/streams.py to check that every stream was charged exactly.

    python bench/charges.py ACCOUNT_ID KEY_ID LIMIT
"""

from __future__ import annotations

import asyncio
import json
import sys

from nemorouter.service.container import close_services, open_services
from nemorouter.settings import Settings


async def charges(account_id: str, key_id: str, limit: int) -> dict[str, object]:
    services = await open_services(Settings.from_env())
    try:
        store = services.store
        account = await store.get_account(account_id)
        if account is None:
            raise SystemExit(f"no account {account_id}")
        everything = await store.list_generations(account_id, None, limit)
        return {
            "generations": [
                {
                    "status": g.status,
                    "streamed": g.streamed,
                    "prompt_tokens": g.prompt_tokens,
                    "completion_tokens": g.completion_tokens,
                    "cost": g.cost,
                    "hold": g.hold,
                }
                for g in everything
                if g.key_id == key_id
            ],
            "account_generations": len(everything),
            "account_generations_cost": sum(g.cost for g in everything),  # pico-USD
            "account_total_usage": account.total_usage,
            "account_held": account.held,
        }
    finally:
        await close_services(services)


def main() -> None:
    account_id, key_id, limit = sys.argv[1], sys.argv[2], int(sys.argv[3])
    print(json.dumps(asyncio.run(charges(account_id, key_id, limit))))


if __name__ == "__main__":
    main()
