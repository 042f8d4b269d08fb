//go:build !race

package broker

// raceOn: the race detector is on; sync.Pool then drops some of what it is given, so
// allocation counts are not exact.
const raceOn = false
