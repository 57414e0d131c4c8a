/* Splitting jsonpb lines into per-row values and shapes, as flowlens.sources.jsonpb reads them. */
#include "native.h"

int split_json(Splitter *sp, Run *run, const char *block, size_t n) { return -1; }
