"""One router per resource. Each handler: dependencies in, one service call, wire model out."""
