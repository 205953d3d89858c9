// Package benchmarks measures the relay against a direct TCP baseline in
// the same run: dial latency, dial rate per mailbox configuration, and bulk
// throughput. Run them with
//
//	go test -run '^$' -bench . -benchtime 2000x ./benchmarks/
//
// Each relayed figure has its direct twin in the same run; compare ratios,
// not absolute numbers, on a noisy machine.
package benchmarks
