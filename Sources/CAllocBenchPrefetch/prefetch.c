// The target is its header (an inline function); this file only makes SwiftPM compile and check it.
#include "CAllocBenchPrefetch.h"
