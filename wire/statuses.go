package wire

// JobStatuses lists every status a job can have, in lifecycle order: the
// one list pages and filters offer.
func JobStatuses() []string {
	return []string{StatusQueued, StatusRunning, StatusHeld, StatusSucceeded, StatusPartial, StatusFailed, StatusCancelled, StatusExpired}
}
