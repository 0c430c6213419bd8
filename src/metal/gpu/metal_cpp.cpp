// The one translation unit that defines metal-cpp's implementation: the Objective-C selectors and
// classes its inline wrappers send messages to (third_party/metal-cpp).
#define NS_PRIVATE_IMPLEMENTATION
#define MTL_PRIVATE_IMPLEMENTATION
#include <Foundation/Foundation.hpp>
#include <Metal/Metal.hpp>
