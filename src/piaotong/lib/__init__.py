"""Pure domain helpers with no models: identifiers, money and tax, capitals, canonical JSON, signing.

Nothing here touches the database; everything is tested without one.
"""
