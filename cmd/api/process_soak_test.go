//go:build soak

package main

// Soak size for the reconnect storm (TESTPLAN F21): make soak.
func init() { stormSubscribers = 5000 }
