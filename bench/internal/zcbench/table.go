package zcbench

import (
	"fmt"
	"io"
	"text/tabwriter"
)

// PrintTable prints the medians: per method its throughput, the sender's
// CPU time (user + system) and its ratio to read+write's, the copies of
// every byte the sender's CPU makes, and what was counted.
func PrintTable(w io.Writer, size int64, fs string, runs int, meds []Result) error {
	fmt.Fprintf(w, "%d MiB file on %s, sent over loopback TCP; medians of %d runs (sender CPU: getrusage of the sending child, around the send)\n\n",
		size>>20, fs, runs)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "method\tMB/s\tsender CPU s\tuser s\tsys s\tratio to read+write\tcopies/byte loopback\tto a NIC\tuser-space MiB\tcompletions (copied)\treceiver CPU s\tcached\tok\t")
	for _, r := range meds {
		ratio := "n/a"
		if x, err := Ratio(meds, r); err == nil {
			ratio = fmt.Sprintf("%.3f", x)
		}
		compl := "-"
		if r.Completions > 0 {
			compl = fmt.Sprintf("%d (%d)", r.Completions, r.CopiedCompl)
		}
		cached := "?"
		if r.Cached >= 0 {
			cached = fmt.Sprintf("%.0f%%", 100*r.Cached)
		}
		if r.Bypass {
			cached += " O_DIRECT"
		}
		ok := "yes"
		if !r.OK {
			ok = "NO: " + r.Error
		}
		userMiB := float64(r.UserBytes) / (1 << 20)
		if r.Method == Baseline {
			userMiB = float64(r.Bytes) / (1 << 20) // its own buffer, not counted by the package
		}
		fmt.Fprintf(tw, "%s\t%.0f\t%.3f\t%.3f\t%.3f\t%s\t%d\t%d\t%.0f\t%s\t%.3f\t%s\t%s\t\n",
			r.Method, r.MBps, r.SenderCPU, r.SenderUser, r.SenderSys, ratio, r.Copies, r.CopiesNIC, userMiB, compl, r.ReceiverCPU, cached, ok)
	}
	return tw.Flush()
}
