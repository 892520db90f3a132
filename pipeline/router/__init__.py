"""Router (R): which decision a request falls under and which model serves it."""
