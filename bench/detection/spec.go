package detection

import (
	"fmt"
	"time"
)

// Spec is one cluster run: one system, one size, one scenario.
type Spec struct {
	System   string // "memberlist" or "pulse"
	N        int
	Scenario string // "crash", "loss" or "isolate"
	Seed     uint64

	// Warmup runs fault-free before anything is measured (memberlist
	// converges, pulse's detectors learn and its start-up grace ends).
	Warmup time.Duration
	// Steady is the fault-free window in which CPU and bytes are measured
	// (crash scenario, before the first crash).
	Steady time.Duration

	// crash: Crashes members stop, CrashEvery apart; Tail is how long
	// detection is awaited after the last one.
	Crashes    int
	CrashEvery time.Duration
	Tail       time.Duration

	// loss: Loss in both directions for Duration, then Settle without.
	Loss     float64
	Duration time.Duration
	Settle   time.Duration

	// isolate: Trials times, a different member is cut off in both
	// directions for Cut, then watched for Watch.
	Trials int
	Cut    time.Duration
	Watch  time.Duration
}

// Name is a short label for progress lines.
func (s Spec) Name() string {
	sys := "pulse"
	if s.System == "memberlist" {
		sys = "memberlist"
	}
	switch s.Scenario {
	case "loss":
		return fmt.Sprintf("%s N=%d loss %.0f%%", sys, s.N, s.Loss*100)
	default:
		return fmt.Sprintf("%s N=%d %s", sys, s.N, s.Scenario)
	}
}

// Result is what one cluster run measured.
type Result struct {
	Spec Spec

	// crash: seconds from each crash to the first dead/down verdict about
	// it; DetectAll (memberlist) to the moment every live member knew.
	Detect     []float64
	DetectAll  []float64
	Undetected int // crashes with no verdict within the tail

	// Window measurements: CPU seconds and payload bytes over Secs
	// (Steady window for crash, the loss phase for loss).
	CPU   float64
	Bytes int64
	Secs  float64

	// Verdicts about members that were alive (loss, isolate): False
	// counts dead/down verdicts seen by the observer (pulse: the monitor;
	// memberlist: member 0), FalseMembers the distinct members concerned,
	// FalseAny (memberlist) dead events about live members summed over
	// every member, ClusterWide (memberlist) live members that at least
	// half of the members had dead at once.
	False        int
	FalseMembers int
	FalseAny     int
	ClusterWide  int
	// Pulse only: suspect and protected transitions about live instances.
	Suspect   int
	Protected int

	Trials []Trial

	// Fault accounting (what the injected faults did).
	PacketsSent, PacketsLost int64
	DialsSent, DialsLost     int64
	// Notes: pulse's transitions about the slowest-detected crash, with
	// the monitor's reasons.
	Notes []string
}

// Trial is one cut-off trial.
type Trial struct {
	Member        int
	AboutCut      int     // verdicts about the cut member (observer count for memberlist)
	AboutCutAt    float64 // seconds after the cut began, of the first (-1: none)
	AboutOthers   int     // dead/down verdicts about other (live) members
	OthersWide    int     // memberlist: other members declared dead by ≥ half the members
	AboutOthAt    float64 // seconds after the cut began, of the first about others (-1: none)
	CutMemberDied bool    // memberlist: the cut member was declared dead cluster-wide
	// Before counts dead/down verdicts (any member, any observer) in the
	// 20 s before the cut: the cluster's background.
	Before int
}
