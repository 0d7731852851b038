/* SPDX-License-Identifier: MIT */
/*
 * test_rng.h: the tests' pseudo-random numbers: splitmix64 from a fixed seed,
 * so a failing randomized test can print its seed and be run again exactly.
 * Header-only; no global state.
 */
#ifndef WEFT_TEST_RNG_H
#define WEFT_TEST_RNG_H

#include <stdint.h>

typedef struct {
    uint64_t s, seed;
} rng_t;

static inline void rng_init(rng_t *r, uint64_t seed)
{
    r->s = r->seed = seed;
}

static inline uint64_t rng_next(rng_t *r)
{
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Uniform enough in [0, n) for tests; 0 when n is 0. */
static inline uint32_t rng_below(rng_t *r, uint32_t n)
{
    return n ? (uint32_t)(rng_next(r) % n) : 0;
}

#endif /* WEFT_TEST_RNG_H */
