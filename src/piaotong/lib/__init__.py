"""Pure domain helpers with no models.

Identifiers, money and tax, Chinese capitals, canonical JSON, signing.

Nothing here touches the database; everything is tested without one.
"""
