// Package workerstop tests that a worker the Temporal SDK stops for good
// (its namespace deleted) makes worker.Run return, on the real embedded
// server. The SDK retries such a refusal for two minutes before it gives
// up, so the test waits that long; it is a package of its own so that it
// waits while the other packages' tests run.
package workerstop
