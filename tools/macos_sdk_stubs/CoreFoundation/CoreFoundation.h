// Stands in for the macOS SDK's header in the Linux host-code check (see ../README.md): only what
// metal-cpp uses from it. Declares nothing that metal-cpp declares.
#pragma once

#include <dispatch/dispatch.h>  // the SDK's CoreFoundation.h brings it in

typedef double CFTimeInterval;
