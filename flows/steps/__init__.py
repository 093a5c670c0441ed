"""The steps the flows share: parameters, blocks, consent and waiting, hand-over, events, health."""
