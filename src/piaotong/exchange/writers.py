"""One writer per fact (一事一写): which node may state which fact (ARCHITECTURE §5).

Seller-side facts are written only by the seller's home node (the regional node of the region in
digits 3-4 of the invoice number, which is the subject's seller region); buyer-side facts only
by the buyer's node; authority facts (失控 / 异常 flags, quotas) only by the hub. A node refuses
(quarantines) an event whose writer is not the rightful one, whatever its signature says.

Pure: no database.

>>> wrong_writer(FactSide.SELLER, "regional", "11", seller_region="11", buyer_region="31")
>>> wrong_writer(FactSide.SELLER, "regional", "31", seller_region="11", buyer_region="31")
'a seller-side fact of region 11 must come from the node of region 11, not from region 31'
>>> wrong_writer(FactSide.AUTHORITY, "regional", "11", seller_region="11", buyer_region="31")
'an authority fact must come from the hub, not from a regional node of region 11'
"""

from __future__ import annotations

from piaotong.exchange.choices import FactSide, NodeRole


def wrong_writer(
    side: FactSide, writer_role: str, writer_region: str, *, seller_region: str, buyer_region: str
) -> str | None:
    """Why the writer may not state this fact, or None if it is the rightful writer."""
    if side == FactSide.AUTHORITY:
        if writer_role != NodeRole.HUB:
            return (
                "an authority fact must come from the hub, not from a regional node of region "
                f"{writer_region}"
            )
        return None
    region = seller_region if side == FactSide.SELLER else buyer_region
    if writer_role == NodeRole.REGIONAL and writer_region == region:
        return None
    if not region:
        return f"a {side.value}-side fact needs a known {side.value} region"
    return (
        f"a {side.value}-side fact of region {region} must come from the node of region "
        f"{region}, not from {'the hub' if writer_role == NodeRole.HUB else 'region ' + writer_region}"
    )
