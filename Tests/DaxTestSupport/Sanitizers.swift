// Which sanitizer this test process runs under (CI runs the suite plain, then under
// AddressSanitizer and ThreadSanitizer: scripts/sanitizers.sh). Tests only: the library
// never asks.
#if canImport(Glibc)
import Glibc
#endif

/// Whether this process runs under ThreadSanitizer.
public let threadSanitizerIsLoaded = dlsym(nil, "__tsan_init") != nil

/// Whether it runs under AddressSanitizer or ThreadSanitizer.
public let sanitizerIsLoaded = threadSanitizerIsLoaded || dlsym(nil, "__asan_init") != nil
