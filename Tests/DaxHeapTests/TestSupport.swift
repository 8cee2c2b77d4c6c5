#if canImport(Glibc)
import Glibc
#endif

func getpidValue() -> Int32 { getpid() }
func removeFile(_ path: String) { unlink(path) }
