"""Authentication of the classical channel: HMAC framing and Wegman-Carter tags."""
