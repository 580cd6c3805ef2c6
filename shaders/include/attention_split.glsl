// Flash-decoding's key ranges of attention.comp (SPLIT), for its ranges and its combine: the
// keys a sequence attends this step (ctx: its last token's context) split over the grid's
// nsplit ranges, at least min_keys each and whole key tiles, so a short chat on a long-context
// server still spreads over every range instead of leaving all its keys to the first one. The
// ranges come from the step's positions, not from the recording: a replayed command buffer
// stays right as the context grows.
uint split_range_keys(uint ctx, uint nsplit, uint min_keys, uint tile) {
  const uint even = ((ctx + nsplit - 1) / nsplit + tile - 1) / tile * tile;
  return max(min_keys, even);
}
