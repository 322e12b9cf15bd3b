package alloc

import "time"

// Every runs fn each interval until stop is closed: the loop of an engine's
// background work, which Close ends by closing stop. A run that overlaps the next
// tick delays it rather than running twice at once.
func Every(stop <-chan struct{}, interval time.Duration, fn func()) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		fn()
	}
}
