package broker

import (
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// Limit is a token bucket: Rate units a second, up to Burst at once.
type Limit struct {
	Rate  float64
	Burst float64
}

// off reports a disabled limit (a negative rate).
func (l Limit) off() bool { return l.Rate < 0 }

// Limits bound what one client may send to the broker. Every agent (a
// username with wire.HostIDPrefix) has a message and a byte bucket; an
// integration account has a message bucket only (it may publish nothing
// but Home Assistant's birth message, and packets are capped in size
// anyway). The buckets belong to the username, not to the connection: a
// client cut off for flooding that reconnects at once finds its buckets as
// it left them.
//
// A zero Limit takes its default; a negative Rate turns that limit off.
// Options.Limits nil turns them all off.
type Limits struct {
	AgentMessages       Limit
	AgentBytes          Limit
	IntegrationMessages Limit
}

// Default limits. What a real agent sends, measured here (2 cores, the
// embedded broker and the console's real ingest): an index job of a
// 200,000-node snapshot sends 75 chunks, 38.5 MiB in all, in 8.4 s (about
// 4.6 MiB/s and 9 chunks/s, plus as many progress reports); each running
// job reports progress twice a second. A faster console takes the chunks
// faster (the agent sends the next one when the previous is acknowledged).
//
//   - Agent messages: 100/s with a burst of 2,000 (20 s at that rate): five
//     times an agent indexing a snapshot while ten other jobs report
//     progress, and room for the outbox an agent drains after a reconnect.
//   - Agent bytes: 16 MiB/s with a burst of 128 MiB: 3.5 times the rate an
//     index was sent at, and the burst holds a whole 200,000-node index
//     three times over, so an index never meets the limit even on a
//     console that stores it as fast as the network brings it.
//   - Integration messages: 20/s with a burst of 1,000 (a client that
//     subscribes to each host's topics one by one at start).
//
// Acknowledgements of the broker's own deliveries (PUBACK, PUBREC,
// PUBCOMP) are not counted as messages: their number is bounded by what
// the broker sends (an integration acknowledges every retained discovery
// config), and a stray one costs a map lookup. Their bytes are counted.
const (
	DefaultAgentMsgRate        = 100
	DefaultAgentMsgBurst       = 2000
	DefaultAgentByteRate       = 16 << 20
	DefaultAgentByteBurst      = 128 << 20
	DefaultIntegrationMsgRate  = 20
	DefaultIntegrationMsgBurst = 1000
)

// withDefaults fills zero limits. A rate given without a burst gets the
// default's ratio of burst to rate (20 s of messages, 8 s of bytes). A
// byte burst is never smaller than the largest packet, or a client sending
// one could never get it through.
func (l Limits) withDefaults(maxPacket float64) Limits {
	fill := func(v *Limit, rate, burst float64) {
		if v.Rate == 0 {
			v.Rate = rate
		}
		if v.Burst <= 0 {
			v.Burst = v.Rate * burst / rate
		}
	}
	fill(&l.AgentMessages, DefaultAgentMsgRate, DefaultAgentMsgBurst)
	fill(&l.AgentBytes, DefaultAgentByteRate, DefaultAgentByteBurst)
	fill(&l.IntegrationMessages, DefaultIntegrationMsgRate, DefaultIntegrationMsgBurst)
	l.AgentMessages.Burst = max(l.AgentMessages.Burst, 1)
	l.IntegrationMessages.Burst = max(l.IntegrationMessages.Burst, 1)
	l.AgentBytes.Burst = max(l.AgentBytes.Burst, maxPacket)
	return l
}

// Reasons given to Options.OnRateLimited.
const (
	LimitMessages = "messages"
	LimitBytes    = "bytes"
)

// bucket is one token bucket. The zero value is full.
type bucket struct {
	used bool
	tok  float64
	last time.Time
}

// refill brings the bucket up to now.
func (b *bucket) refill(l Limit, now time.Time) {
	if !b.used {
		b.used, b.tok, b.last = true, l.Burst, now
		return
	}
	if d := now.Sub(b.last); d > 0 {
		b.tok = min(l.Burst, b.tok+d.Seconds()*l.Rate)
		b.last = now
	}
}

// take spends n tokens if there are that many.
func (b *bucket) take(l Limit, n float64, now time.Time) bool {
	b.refill(l, now)
	if b.tok < n {
		return false
	}
	b.tok -= n
	return true
}

// clientBuckets are one username's buckets.
type clientBuckets struct {
	mu    sync.Mutex
	msgs  bucket
	bytes bucket
}

// limitHook enforces Limits. It counts every packet a client sends after
// its CONNECT (OnPacketRead runs in the client's read loop, before the
// packet is processed) and disconnects a client past a limit with an MQTT 5
// reason code: 0x96 (message rate too high) or 0x97 (quota exceeded, for
// bytes). Until a tenth of the emptied bucket has come back, a new
// connection under that username is refused with 0x9F (connection rate
// exceeded), so reconnecting at once does not start a new flood.
type limitHook struct {
	mqtt.HookBase
	srv     *mqtt.Server
	limits  Limits
	log     *rateLog
	limited func(role, limit string)
	now     func() time.Time

	clients   sync.Map // username → *clientBuckets
	lastPrune atomic.Int64
}

func newLimitHook(srv *mqtt.Server, limits Limits, log *slog.Logger, limited func(role, limit string)) *limitHook {
	if limited == nil {
		limited = func(string, string) {}
	}
	return &limitHook{srv: srv, limits: limits, log: newRateLog(log, 10*time.Second), limited: limited, now: time.Now}
}

func (h *limitHook) ID() string { return "restic-manager-limits" }

func (h *limitHook) Provides(b byte) bool {
	return b == mqtt.OnConnect || b == mqtt.OnSessionEstablished || b == mqtt.OnPacketRead
}

func (h *limitHook) buckets(user string) *clientBuckets {
	if v, ok := h.clients.Load(user); ok {
		return v.(*clientBuckets)
	}
	v, _ := h.clients.LoadOrStore(user, new(clientBuckets))
	return v.(*clientBuckets)
}

// limitsOf are the message and byte limits of a role.
func (h *limitHook) limitsOf(role string) (msgs, bytes Limit) {
	if role == roleAgent {
		return h.limits.AgentMessages, h.limits.AgentBytes
	}
	return h.limits.IntegrationMessages, Limit{Rate: -1}
}

// OnConnect refuses a username whose buckets are still nearly empty after
// it was cut off. The username is not authenticated yet: that is harmless,
// as only authenticated traffic spends a username's tokens, so nobody can
// lock an agent out by connecting under its name.
func (h *limitHook) OnConnect(cl *mqtt.Client, pk packets.Packet) error {
	user := string(pk.Connect.Username)
	v, ok := h.clients.Load(user)
	if !ok {
		return nil
	}
	b := v.(*clientBuckets)
	msgs, bytes := h.limitsOf(userRole(user))
	now := h.now()
	b.mu.Lock()
	short := false
	if !msgs.off() {
		b.msgs.refill(msgs, now)
		short = b.msgs.tok < msgs.Burst/10
	}
	if !bytes.off() {
		b.bytes.refill(bytes, now)
		short = short || b.bytes.tok < bytes.Burst/10
	}
	b.mu.Unlock()
	if !short {
		return nil
	}
	h.log.warn("connect refused: the client's rate limit has not recovered", "user", user, "remote", cl.Net.Remote)
	_ = h.srv.SendConnack(cl, packets.ErrConnectionRateExceeded, false, nil)
	return packets.ErrConnectionRateExceeded
}

// OnSessionEstablished spends a message on the CONNECT itself, so a client
// cannot flood by connecting over and over, and now and then forgets the
// buckets of idle clients.
func (h *limitHook) OnSessionEstablished(cl *mqtt.Client, pk packets.Packet) {
	h.prune()
	_, _ = h.count(cl, pk)
}

func (h *limitHook) OnPacketRead(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	// A CONNECT is read before the client has a username; it is counted
	// once authenticated (OnSessionEstablished).
	if pk.FixedHeader.Type == packets.Connect || cl.Net.Inline {
		return pk, nil
	}
	return h.count(cl, pk)
}

// count spends a packet's tokens, and disconnects the client past a limit.
func (h *limitHook) count(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	user := string(cl.Properties.Username)
	role := roleOf(cl)
	msgs, bytes := h.limitsOf(role)
	size := float64(pk.FixedHeader.Remaining + 2)
	var isMsg bool
	switch pk.FixedHeader.Type {
	case packets.Puback, packets.Pubrec, packets.Pubcomp:
	default:
		isMsg = true
	}
	now := h.now()
	b := h.buckets(user)
	b.mu.Lock()
	code := packets.CodeSuccess
	switch {
	case isMsg && !msgs.off() && !b.msgs.take(msgs, 1, now):
		code = packets.ErrMessageRateTooHigh
	case !bytes.off() && !b.bytes.take(bytes, size, now):
		code = packets.ErrQuotaExceeded
	}
	b.mu.Unlock()
	if code == packets.CodeSuccess {
		return pk, nil
	}
	limit, rate := LimitMessages, msgs.Rate
	if code == packets.ErrQuotaExceeded {
		limit, rate = LimitBytes, bytes.Rate
	}
	h.log.warn("client disconnected: rate limit exceeded", "user", user, "role", role, "limit", limit, "per_second", rate, "remote", cl.Net.Remote)
	h.limited(role, limit)
	disconnect(cl, code)
	// The read loop ends on this error; the DISCONNECT told the client why.
	return pk, packets.ErrRejectPacket
}

// Lingering after a DISCONNECT: at most this long and this much input.
const (
	lingerTime  = 2 * time.Second
	lingerBytes = 8 << 20
)

// disconnect sends a DISCONNECT with code and closes the connection once
// the client has read it. mochi's DisconnectClient closes at once, and
// closing a socket with unread input (a flooding client's next packets)
// sends a TCP reset that can destroy the DISCONNECT before the client reads
// it. So the input is read and dropped until the client closes its side
// (it does on reading the DISCONNECT) or lingerTime passes. This runs in
// the client's own read loop, which ends next anyway.
func disconnect(cl *mqtt.Client, code packets.Code) {
	_ = cl.WritePacket(packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Disconnect},
		ReasonCode:  code.Code,
		Properties:  packets.Properties{ReasonString: code.Reason},
	})
	if c := cl.Net.Conn; c != nil {
		_ = c.SetReadDeadline(time.Now().Add(lingerTime))
		_, _ = io.CopyN(io.Discard, c, lingerBytes)
	}
	cl.Stop(code)
}

// pruneEvery: idle buckets are forgotten at most this often.
const pruneEvery = time.Minute

// prune forgets the buckets that have refilled completely: a full bucket
// is what a new one would be, so this changes no client's budget.
func (h *limitHook) prune() {
	now := h.now()
	last := h.lastPrune.Load()
	if now.UnixNano()-last < int64(pruneEvery) || !h.lastPrune.CompareAndSwap(last, now.UnixNano()) {
		return
	}
	h.clients.Range(func(k, v any) bool {
		b := v.(*clientBuckets)
		msgs, bytes := h.limitsOf(userRole(k.(string)))
		b.mu.Lock()
		full := true
		if b.msgs.used && !msgs.off() {
			b.msgs.refill(msgs, now)
			full = b.msgs.tok >= msgs.Burst
		}
		if b.bytes.used && !bytes.off() {
			b.bytes.refill(bytes, now)
			full = full && b.bytes.tok >= bytes.Burst
		}
		b.mu.Unlock()
		if full {
			h.clients.Delete(k)
		}
		return true
	})
}

// rateLog writes at most one warning per interval and counts the ones it
// left out, so that a flood of refusals cannot flood the log.
type rateLog struct {
	log   *slog.Logger
	every time.Duration

	mu         sync.Mutex
	last       time.Time
	suppressed int
}

func newRateLog(log *slog.Logger, every time.Duration) *rateLog {
	return &rateLog{log: log, every: every}
}

func (r *rateLog) warn(msg string, args ...any) {
	now := time.Now()
	r.mu.Lock()
	if !r.last.IsZero() && now.Sub(r.last) < r.every {
		r.suppressed++
		r.mu.Unlock()
		return
	}
	n := r.suppressed
	r.last, r.suppressed = now, 0
	r.mu.Unlock()
	if n > 0 {
		args = append(args, "suppressed_since_last", n)
	}
	r.log.Warn(msg, args...)
}
