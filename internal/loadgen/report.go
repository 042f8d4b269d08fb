package loadgen

import (
	"fmt"
	"io"
	"text/tabwriter"
)

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// pct is a share in percent, or "unknown".
func pct(p *float64) string {
	if p == nil {
		return "unknown"
	}
	return fmt.Sprintf("%.1f %%", *p)
}

// WriteTable writes r as a human-readable table.
func (r *PubSubResult) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	rate := "unpaced"
	if r.TargetRate > 0 {
		rate = fmt.Sprintf("%.0f msg/s total", r.TargetRate)
	}
	sec := "plain"
	if r.TLS {
		sec = "TLS"
	}
	fmt.Fprintf(tw, "scenario\t%d pub × %d sub, %s, QoS %d, %d B, %s, MQTT %d, %s\n",
		r.Publishers, r.Subscribers, r.TopicMode, r.QoS, r.PayloadSize, rate, r.MQTT, sec)
	fmt.Fprintf(tw, "window\t%.1fs after %.1fs warm-up\n", r.DurationS, r.WarmupS)
	fmt.Fprintf(tw, "delivered\t%.0f msg/s\t(sent %.0f msg/s)\n", r.DeliveredPerSec, r.SentPerSec)
	fmt.Fprintf(tw, "latency\tp50 %.0f µs\tp99 %.0f µs\tp999 %.0f µs\tmax %.0f µs\t(%d samples)\n",
		r.Latency.P50, r.Latency.P99, r.Latency.P999, r.Latency.Max, r.Latency.Count)
	if l := r.PaceLate; l != nil {
		fmt.Fprintf(tw, "sent late\tp50 %.0f µs\tp99 %.0f µs\tp999 %.0f µs\tmax %.0f µs\t(behind the rate: the tool's own timing)\n",
			l.P50, l.P99, l.P999, l.Max)
	}
	fmt.Fprintf(tw, "messages\tsent %d\tacked %d\tack failed %d\n", r.Sent, r.Acked, r.AckFailed)
	fmt.Fprintf(tw, "\texpected %d\treceived %d\tlost (gaps) %d\tundelivered at end %d\tduplicate/late %d\tforeign %d\tdrained %v\n",
		r.Expected, r.Received, r.Lost, r.Undelivered, r.DuplicateOrLate, r.Foreign, r.Drained)
	fmt.Fprintf(tw, "load tool\tCPU %.2f s on %d core(s)\tits CPUs stolen by the host %s\n", r.ToolCPUSeconds, r.ToolCores, pct(r.ToolStealPct))
	if b := r.Broker; b != nil {
		fmt.Fprintf(tw, "broker %d\tCPU %.2f s\t%.2f µs/msg\tpeak RSS %s (anonymous %s)\tVmHWM %s\tits CPUs stolen by the host %s\n",
			b.PID, b.CPUSeconds, b.CPUPerMsgUs, mib(b.PeakRSS), mib(b.PeakRSSAnon), mib(b.VmHWM), pct(b.StealPct))
	}
	if r.BrokerErr != "" {
		fmt.Fprintf(tw, "broker\t%s\n", r.BrokerErr)
	}
	return tw.Flush()
}

// WriteTable writes r as a human-readable table.
func (r *ConnsResult) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	sec := "plain"
	if r.TLS {
		sec = "TLS"
	}
	fmt.Fprintf(tw, "scenario\t%d idle connections, %s, MQTT %d, %d source addresses, %d at a time, hold %.1fs\n",
		r.Conns, sec, r.MQTT, r.Sources, r.Concurrency, r.HoldS)
	fmt.Fprintf(tw, "connected\t%d\tfailed %d\talive at end %d\tpings %d\n", r.Connected, r.Failed, r.Alive, r.Pings)
	fmt.Fprintf(tw, "connect rate\t%.0f /s\t(%.2f s)\n", r.ConnectRate, r.ConnectS)
	fmt.Fprintf(tw, "handshake\tp50 %.0f µs\tp99 %.0f µs\tmax %.0f µs\n", r.Handshake.P50, r.Handshake.P99, r.Handshake.Max)
	if r.TLS {
		fmt.Fprintf(tw, "TLS sessions\tresumed %d\tfull %d\tkey exchange %s\n", r.Resumed, r.Full, r.KeyExchange)
	}
	if r.FirstError != "" {
		fmt.Fprintf(tw, "first error\t%s\n", r.FirstError)
	}
	if b := r.Broker; b != nil {
		fmt.Fprintf(tw, "broker %d\tRSS before %s\tconnected %s\theld %s\tVmHWM %s\n",
			b.PID, mib(b.RSSBefore), mib(b.RSSConnected), mib(b.RSSHeld), mib(b.VmHWM))
		fmt.Fprintf(tw, "\t%.0f bytes/conn\tCPU %.2f s\t%.0f µs/conn\tits CPUs stolen by the host %s\n", b.BytesPerConn, b.CPUSeconds, b.CPUPerConnUs, pct(b.StealPct))
	}
	if r.BrokerErr != "" {
		fmt.Fprintf(tw, "broker\t%s\n", r.BrokerErr)
	}
	return tw.Flush()
}
