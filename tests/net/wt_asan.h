/* SPDX-License-Identifier: MIT */
/*
 * wt_asan.h: WT_ASAN is 1 when the test is built with AddressSanitizer (gcc
 * or clang), else 0, so integration tests can scale rounds down and skip
 * memory bounds that mean nothing under ASan.
 */
#ifndef WEFT_WT_ASAN_H
#define WEFT_WT_ASAN_H

#if defined(__SANITIZE_ADDRESS__)
#define WT_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define WT_ASAN 1
#endif
#endif
#ifndef WT_ASAN
#define WT_ASAN 0
#endif

#endif
