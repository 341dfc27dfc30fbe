#include <jemalloc/jemalloc.h>

// jemalloc's flag macros are function-like and so invisible to Swift.
static inline int cjemalloc_align_flags(size_t alignment) { return MALLOCX_ALIGN(alignment); }
static inline int cjemalloc_zero_flag(void) { return MALLOCX_ZERO; }
