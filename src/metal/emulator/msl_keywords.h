// MSL's address-space qualifiers and kernel keyword, which mean nothing to a C++ compiler. Included
// only by the generated translation units that compile the kernels (never by other C++).
#pragma once

#define device
#define threadgroup
#define thread
#define constant const
#define kernel
#define ORCHARD_MSL_EMULATION 1
