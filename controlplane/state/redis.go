package state

import (
	"context"
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

// Apply implements Store: one pipeline.
func (s *Redis) Apply(ctx context.Context, changes []Change) error {
	if len(changes) == 0 {
		return nil
	}
	_, err := s.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, c := range changes {
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
		return nil
	})
	return err
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

// Publish implements Store.
func (s *Redis) Publish(ctx context.Context, channel string, msg []byte) error {
	return s.c.Publish(ctx, keyPrefix+channel, msg).Err()
}

// Subscribe implements Store: Redis pub/sub, re-subscribed by the client
// after a reconnection (messages published meanwhile are lost, as Redis
// pub/sub loses them).
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
		in := ps.Channel()
		for {
			select {
			case <-ctx.Done():
				return
			case m, ok := <-in:
				if !ok {
					return
				}
				select {
				case out <- []byte(m.Payload):
				default:
				}
			}
		}
	}()
	return out, nil
}

// Ping implements Store.
func (s *Redis) Ping(ctx context.Context) error { return s.c.Ping(ctx).Err() }

// Name implements Store.
func (s *Redis) Name() string { return s.name }

// Close implements Store.
func (s *Redis) Close() error { return s.c.Close() }
