//go:build race

package state

// raceEnabled: the race detector makes the 65 536-ban test take ten
// seconds; TestMaxEntryBytes covers the same bound arithmetically.
const raceEnabled = true
