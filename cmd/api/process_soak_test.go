//go:build soak

package main

// Soak sizes: the reconnect storm (TESTPLAN F21) and the abrupt disconnects
// of many streams (F12): make soak.
func init() {
	stormSubscribers = 5000
	manyStreams = 10000
}
