//go:build !amd64 || purego

package offload

// sumLittleEndian adds b to acc as little-endian words without folding.
// acc must be below 2^48 and len(b) at most maxSumLen.
func sumLittleEndian(b []byte, acc uint64) uint64 { return sumGeneric(b, acc) }
