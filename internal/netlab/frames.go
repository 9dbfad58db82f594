package netlab

// FloodFrames returns count broadcast frames of 60 bytes, each from its
// own locally administered source MAC (02:ee:00:00:00:00 on, counting
// up) and of EtherType 0x88b5 (IEEE 802 local experimental), so that no
// stack answers them: what a hostile container sends to fill its
// neighbours' FDBs. count is at most 1<<24.
func FloodFrames(count int) [][]byte {
	buf := make([]byte, 60*count)
	frames := make([][]byte, count)
	for i := range frames {
		f := buf[60*i : 60*(i+1) : 60*(i+1)]
		copy(f[0:12], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0xee, 0})
		f[9], f[10], f[11] = byte(i>>16), byte(i>>8), byte(i)
		f[12], f[13] = 0x88, 0xb5
		frames[i] = f
	}
	return frames
}
