package state

import (
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Redis is a Store on Redis or Valkey, shared by several control planes.
// Records without TTL of one kind are one hash (strait:KIND, field per
// key: HSET/HDEL/HGETALL, so listing a kind is one command); records with
// TTL (nonces, leases) are keys of their own (strait:KIND:KEY, SET PX).
// Batches go in one pipeline (not MULTI: a Redis Cluster would refuse
// transactions across slots). The client (go-redis) reconnects by itself;
// a command that fails while Redis is away returns its error, which the
// Writer turns into "down".
type Redis struct {
	c    redis.UniversalClient
	name string
}

var _ Store = (*Redis)(nil)

func init() { redis.SetLogger(quietLogger{}) }

// quietLogger keeps go-redis's own log lines (one per failed dial) out of
// Strait's log: the Writer reports an outage once, with its cause.
type quietLogger struct{}

func (quietLogger) Printf(context.Context, string, ...any) {}

// redisTimeout bounds each command: the Writer and the registrar must not
// wait on a Redis that stopped answering for longer than a SIP
// retransmission.
const redisTimeout = 500 * time.Millisecond

// keyPrefix starts every key Strait writes (several deployments share a
// Redis by using different databases).
const keyPrefix = "strait:"

// ttlKinds are kept as keys of their own, with an expiry.
var ttlKinds = map[Kind]bool{Nonces: true, Leases: true}

func redisOptions(spec string) (*redis.Options, error) {
	o, err := redis.ParseURL(spec)
	if err != nil {
		return nil, fmt.Errorf("state %q: %w", redact(spec), err)
	}
	return o, nil
}

// sentinelOptions parses redis+sentinel://[:PASSWORD@]HOST:PORT[,HOST:PORT...]/MASTER[/DB].
func sentinelOptions(spec string) (*redis.FailoverOptions, error) {
	u, err := url.Parse(spec)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("state %q: want redis+sentinel://[:PASSWORD@]HOST:PORT[,HOST:PORT]/MASTER[/DB]", redact(spec))
	}
	parts := strings.Split(strings.Trim(u.Path, "/"), "/")
	if parts[0] == "" {
		return nil, fmt.Errorf("state %q: the master's name is missing", redact(spec))
	}
	o := &redis.FailoverOptions{MasterName: parts[0], SentinelAddrs: strings.Split(u.Host, ",")}
	if len(parts) > 1 {
		if o.DB, err = strconv.Atoi(parts[1]); err != nil {
			return nil, fmt.Errorf("state %q: bad database number", redact(spec))
		}
	}
	if u.User != nil {
		o.Username = u.User.Username()
		o.Password, _ = u.User.Password()
	}
	return o, nil
}

// redact removes a password from a --state URL for messages.
func redact(spec string) string {
	u, err := url.Parse(spec)
	if err != nil || u.User == nil {
		return spec
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), "xxx")
	}
	return u.String()
}

// OpenRedis connects to the Redis the URL names (redis://, rediss:// with
// TLS, redis+sentinel:// for a Sentinel-managed master); it does not wait
// for Redis to answer (Ping tells).
func OpenRedis(spec string) (*Redis, error) {
	if strings.HasPrefix(spec, "redis+sentinel://") {
		o, err := sentinelOptions(spec)
		if err != nil {
			return nil, err
		}
		o.DialTimeout, o.ReadTimeout, o.WriteTimeout = redisTimeout, redisTimeout, redisTimeout
		return &Redis{c: redis.NewFailoverClient(o), name: "redis sentinel " + o.MasterName + "@" + strings.Join(o.SentinelAddrs, ",")}, nil
	}
	o, err := redisOptions(spec)
	if err != nil {
		return nil, err
	}
	o.DialTimeout, o.ReadTimeout, o.WriteTimeout = redisTimeout, redisTimeout, redisTimeout
	o.MaxRetries = 1
	return &Redis{c: redis.NewClient(o), name: fmt.Sprintf("redis %s/%d", o.Addr, o.DB)}, nil
}

func hashKey(kind Kind) string            { return keyPrefix + string(kind) }
func ttlKey(kind Kind, key string) string { return keyPrefix + string(kind) + ":" + key }

// RedisFlushInterval is the Writer's batching interval on Redis. Each
// batch is one pipeline, one round trip: a write and a read system call
// here, the same in redis-server, a wake-up of each side. At the default
// 20 ms those fixed costs, 50 times a second however few calls there were,
// were most of what Redis cost per call (strait-bench calls --state);
// every 100 ms, as the embedded store's, a crash or the loss of this
// control plane forgets at most the last 100 ms of changes (a call
// answered then ends as a call still ringing does).
const RedisFlushInterval = 100 * time.Millisecond

// FlushInterval is the Writer's batching interval for this store.
func (s *Redis) FlushInterval() time.Duration { return RedisFlushInterval }

// Apply implements Store: one pipeline, in which the records without TTL
// of one kind are one HSET (every record written) and one HDEL (every one
// deleted), whatever the number of calls in the batch: one command for
// Redis to parse, run and answer, and one reply for the client to read,
// instead of one per record. Changes to different keys commute, so they
// are grouped so; a batch that changes one key twice (the Writer's never
// do) is sent in its order instead, one command per change.
func (s *Redis) Apply(ctx context.Context, changes []Change) error {
	if len(changes) == 0 {
		return nil
	}
	_, err := s.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		if !distinctKeys(changes) {
			for _, c := range changes {
				s.queue(ctx, p, c)
			}
			return nil
		}
		// The HSET and HDEL of each kind, in the order the kinds come.
		type group struct {
			kind       Kind
			puts, dels []any
		}
		var groups []*group
		of := func(k Kind) *group {
			for _, g := range groups {
				if g.kind == k {
					return g
				}
			}
			g := &group{kind: k}
			groups = append(groups, g)
			return g
		}
		for _, c := range changes {
			switch {
			case ttlKinds[c.Kind]:
				s.queue(ctx, p, c)
			case c.Value == nil:
				g := of(c.Kind)
				g.dels = append(g.dels, c.Key)
			default:
				g := of(c.Kind)
				g.puts = append(g.puts, c.Key, c.Value)
			}
		}
		for _, g := range groups {
			if len(g.puts) > 0 {
				p.Do(ctx, append([]any{"hset", hashKey(g.kind)}, g.puts...)...)
			}
			if len(g.dels) > 0 {
				p.Do(ctx, append([]any{"hdel", hashKey(g.kind)}, g.dels...)...)
			}
		}
		return nil
	})
	return err
}

// queue adds one change to a pipeline as a command of its own.
func (s *Redis) queue(ctx context.Context, p redis.Pipeliner, c Change) {
	switch {
	case ttlKinds[c.Kind] && c.Value == nil:
		p.Del(ctx, ttlKey(c.Kind, c.Key))
	case ttlKinds[c.Kind]:
		p.Set(ctx, ttlKey(c.Kind, c.Key), c.Value, c.TTL)
	case c.Value == nil:
		p.HDel(ctx, hashKey(c.Kind), c.Key)
	default:
		p.HSet(ctx, hashKey(c.Kind), c.Key, c.Value)
	}
}

// distinctKeys reports whether no key comes twice in changes.
func distinctKeys(changes []Change) bool {
	if len(changes) < 2 {
		return true
	}
	seen := make(map[pendingKey]struct{}, len(changes))
	for _, c := range changes {
		k := pendingKey{c.Kind, c.Key}
		if _, dup := seen[k]; dup {
			return false
		}
		seen[k] = struct{}{}
	}
	return true
}

// Load implements Store.
func (s *Redis) Load(ctx context.Context, kind Kind) (map[string][]byte, error) {
	out := map[string][]byte{}
	if ttlKinds[kind] {
		prefix := ttlKey(kind, "")
		iter := s.c.Scan(ctx, 0, prefix+"*", 256).Iterator()
		for iter.Next(ctx) {
			v, err := s.c.Get(ctx, iter.Val()).Bytes()
			if err == nil {
				out[strings.TrimPrefix(iter.Val(), prefix)] = v
			}
		}
		return out, iter.Err()
	}
	m, err := s.c.HGetAll(ctx, hashKey(kind)).Result()
	if err != nil {
		return nil, err
	}
	for k, v := range m {
		out[k] = []byte(v)
	}
	return out, nil
}

// Get implements Store.
func (s *Redis) Get(ctx context.Context, kind Kind, key string) ([]byte, bool, error) {
	var v []byte
	var err error
	if ttlKinds[kind] {
		v, err = s.c.Get(ctx, ttlKey(kind, key)).Bytes()
	} else {
		v, err = s.c.HGet(ctx, hashKey(kind), key).Bytes()
	}
	if errors.Is(err, redis.Nil) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	return v, true, nil
}

// PutIfAbsent implements Store (HSETNX, then what is there).
func (s *Redis) PutIfAbsent(ctx context.Context, kind Kind, key string, value []byte) ([]byte, error) {
	if err := s.c.HSetNX(ctx, hashKey(kind), key, value).Err(); err != nil {
		return nil, err
	}
	return s.c.HGet(ctx, hashKey(kind), key).Bytes()
}

// advanceScript raises a counter key to ARGV[1] if higher, with expiry
// ARGV[2] ms; 1 if it did.
var advanceScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if v and tonumber(v) >= tonumber(ARGV[1]) then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1`)

// leaseScript takes or renews a lease for ARGV[1] for ARGV[2] ms.
var leaseScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if v and v ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1`)

// releaseScript deletes a lease held by ARGV[1].
var releaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`)

// advanceInScript is advanceScript when the hash field KEYS[2]/ARGV[3]
// (the store's generation) is ARGV[4]; else -1 and nothing changes.
// (Two keys in one script: fine on one Redis or a Sentinel-managed one,
// not on a Redis Cluster, which OpenRedis does not offer.)
var advanceInScript = redis.NewScript(`
if redis.call('HGET', KEYS[2], ARGV[3]) ~= ARGV[4] then return -1 end
local v = redis.call('GET', KEYS[1])
if v and tonumber(v) >= tonumber(ARGV[1]) then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1`)

// advanceIn implements fencedAdvancer: Advance and the generation's check
// in one script, one round trip.
func (s *Redis) advanceIn(ctx context.Context, gen string, kind Kind, key string, n uint64, ttl time.Duration) (bool, error) {
	r, err := advanceInScript.Run(ctx, s.c, []string{ttlKey(kind, key), hashKey(Secrets)},
		strconv.FormatUint(n, 10), ttl.Milliseconds(), generationKey, gen).Int()
	if err == nil && r == -1 {
		return false, ErrStoreLost
	}
	return r == 1, err
}

// Advance implements Store.
func (s *Redis) Advance(ctx context.Context, kind Kind, key string, n uint64, ttl time.Duration) (bool, error) {
	r, err := advanceScript.Run(ctx, s.c, []string{ttlKey(kind, key)}, strconv.FormatUint(n, 10), ttl.Milliseconds()).Int()
	return r == 1, err
}

// Lease implements Store.
func (s *Redis) Lease(ctx context.Context, name, owner string, ttl time.Duration) (bool, error) {
	r, err := leaseScript.Run(ctx, s.c, []string{ttlKey(Leases, name)}, owner, ttl.Milliseconds()).Int()
	return r == 1, err
}

// Release implements Store.
func (s *Redis) Release(ctx context.Context, name, owner string) error {
	return releaseScript.Run(ctx, s.c, []string{ttlKey(Leases, name)}, owner).Err()
}

// knownScript answers 1 when the hash field KEYS[1]/ARGV[1] has the
// length ARGV[3] and the SHA-1 (hex) ARGV[2], else the field (nil when
// there is none). SHA-1 is what Redis's Lua offers; it tells a record
// this process wrote from one another control plane wrote since (the
// worst a forged collision could do is lose that one's change, as
// two writes at the same instant may).
var knownScript = redis.NewScript(`
local v = redis.call('HGET', KEYS[1], ARGV[1])
if not v then return false end
if string.len(v) == tonumber(ARGV[3]) and redis.sha1hex(v) == ARGV[2] then return 1 end
return v`)

// getKnown implements knownGetter for records without TTL: the record is
// compared with known in Redis, by digest, and sent only if it differs.
func (s *Redis) getKnown(ctx context.Context, kind Kind, key string, known []byte) ([]byte, bool, bool, error) {
	if ttlKinds[kind] {
		v, ok, err := s.Get(ctx, kind, key)
		return v, ok, ok && bytes.Equal(v, known), err
	}
	sum := sha1.Sum(known)
	r, err := knownScript.Run(ctx, s.c, []string{hashKey(kind)}, key, hex.EncodeToString(sum[:]), len(known)).Result()
	switch v := r.(type) {
	case int64:
		return nil, true, true, nil
	case string:
		return []byte(v), true, false, nil
	}
	if errors.Is(err, redis.Nil) {
		return nil, false, false, nil
	}
	if err == nil {
		err = fmt.Errorf("state: unexpected reply %T to a digest comparison", r)
	}
	return nil, false, false, err
}

// Publish implements Store.
func (s *Redis) Publish(ctx context.Context, channel string, msg []byte) error {
	return s.c.Publish(ctx, keyPrefix+channel, msg).Err()
}

// Subscribe implements Store: Redis pub/sub, re-subscribed by the client
// after a reconnection. Messages published meanwhile are lost (Redis
// pub/sub keeps nothing): each re-subscription delivers a nil message
// (Store's gap mark) so that the subscriber can catch up from the records.
func (s *Redis) Subscribe(ctx context.Context, channel string) (<-chan []byte, error) {
	ps := s.c.Subscribe(ctx, keyPrefix+channel)
	if _, err := ps.Receive(ctx); err != nil {
		ps.Close()
		return nil, err
	}
	out := make(chan []byte, subscriberQueue)
	go func() {
		defer close(out)
		defer ps.Close()
		in := ps.ChannelWithSubscriptions()
		for {
			select {
			case <-ctx.Done():
				return
			case m, ok := <-in:
				if !ok {
					return
				}
				switch m := m.(type) {
				case *redis.Message:
					select {
					case out <- []byte(m.Payload):
					default:
					}
				case *redis.Subscription:
					// The first confirmation was Receive's: this is a
					// re-subscription. The gap mark is never dropped.
					if m.Kind == "subscribe" {
						select {
						case out <- nil:
						case <-ctx.Done():
							return
						}
					}
				}
			}
		}
	}()
	return out, nil
}

// queueKey names a queue's stream.
func queueKey(name string) string { return keyPrefix + "queue:" + name }

// Bounds of Receive's reads.
const (
	// queueBlock is how long one read waits for a message (XREAD
	// BLOCK): an idle reader asks once per queueBlock, and stops at most
	// this long after its ctx ends.
	queueBlock = time.Second
	// queueRetry is the pause after a read that failed (Redis away).
	queueRetry = 100 * time.Millisecond
	// queueBatch bounds the messages one read returns.
	queueBatch = 128
)

// Push implements Store: a Redis Stream (XADD with MAXLEN ~, so that
// trimming costs nothing; PEXPIRE), one pipeline.
func (s *Redis) Push(ctx context.Context, queue string, msg []byte, max int, ttl time.Duration) error {
	k := queueKey(queue)
	_, err := s.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.XAdd(ctx, &redis.XAddArgs{Stream: k, MaxLen: int64(max), Approx: true, Values: []any{"m", msg}})
		p.PExpire(ctx, k, ttl)
		return nil
	})
	return err
}

// Receive implements Store: reads of the stream from its last entry at
// the call (XREAD BLOCK from the last id read), made again after an
// error from where they stopped: entries are read once, in order, and
// none is missed while the connection is down.
func (s *Redis) Receive(ctx context.Context, queue string) (<-chan []byte, error) {
	k := queueKey(queue)
	last := "0-0"
	tail, err := s.c.XRevRangeN(ctx, k, "+", "-", 1).Result()
	if err != nil {
		return nil, err
	}
	if len(tail) == 1 {
		last = tail[0].ID
	}
	out := make(chan []byte)
	go func() {
		defer close(out)
		for ctx.Err() == nil {
			res, err := s.c.XRead(ctx, &redis.XReadArgs{Streams: []string{k, last}, Count: queueBatch, Block: queueBlock}).Result()
			switch {
			case errors.Is(err, redis.Nil):
				continue // nothing within queueBlock
			case errors.Is(err, redis.ErrClosed):
				return
			case err != nil:
				select {
				case <-ctx.Done():
				case <-time.After(queueRetry):
				}
				last = s.reread(ctx, k, last)
				continue
			}
			for _, st := range res {
				for _, m := range st.Messages {
					last = m.ID
					v, _ := m.Values["m"].(string)
					select {
					case out <- []byte(v):
					case <-ctx.Done():
						return
					}
				}
			}
		}
	}()
	return out, nil
}

// reread returns where a reader of the stream k that last read the entry
// last goes on after an error: from last, unless the stream is gone or
// now ends before last. A stream's ids only grow, so that one was made
// again (a Redis that came back empty, a failover to a host whose clock
// is behind): none of its entries were read, it is read from its start.
func (s *Redis) reread(ctx context.Context, k, last string) string {
	tail, err := s.c.XRevRangeN(ctx, k, "+", "-", 1).Result()
	switch {
	case err != nil:
		return last // the next read fails too, and asks again
	case len(tail) == 0 || streamIDLess(tail[0].ID, last):
		return "0-0"
	}
	return last
}

// streamIDLess reports whether the stream entry id a ("MS-SEQ") comes
// before b.
func streamIDLess(a, b string) bool {
	parse := func(id string) (uint64, uint64) {
		ms, seq, _ := strings.Cut(id, "-")
		m, _ := strconv.ParseUint(ms, 10, 64)
		n, _ := strconv.ParseUint(seq, 10, 64)
		return m, n
	}
	am, as := parse(a)
	bm, bs := parse(b)
	return am < bm || (am == bm && as < bs)
}

// Ping implements Store.
func (s *Redis) Ping(ctx context.Context) error { return s.c.Ping(ctx).Err() }

// Name implements Store.
func (s *Redis) Name() string { return s.name }

// Close implements Store.
func (s *Redis) Close() error { return s.c.Close() }
