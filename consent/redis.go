package consent

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/phiguard/phiguard/internal/orgid"
	"github.com/redis/go-redis/v9"

	"github.com/phiguard/phiguard/internal/redisclient"
)

// Redis is a Store in a Redis server that every replica shares. Record is
// one round trip: a script that compares and sets atomically. Every error
// (unreachable, timeout, a server that refuses, an entry it cannot read)
// is returned: the caller refuses to send.
//
// Keys, under the prefix: c:ORG, a hash from each ref to
// "STATE:AT:SOURCE" (State as a number, At in Unix milliseconds). The keys
// have no TTL: consent is kept until replaced, because an opt-out that
// expired silently would let messages reach a patient who said STOP (and
// a grant that expired would stop messages the patient asked for without
// telling anyone). Give the server a noeviction maxmemory-policy and
// persistence for the same reason.
type Redis struct {
	c      *redis.Client
	prefix string
	now    func() time.Time
}

var _ Store = (*Redis)(nil)

// RedisOptions configure a Redis store.
type RedisOptions = redisclient.Options

// DefaultRedisTimeout bounds each Redis command.
const DefaultRedisTimeout = redisclient.DefaultTimeout

// NewRedis returns a store over the server o names. It does not connect
// until first used; Ping tells whether it answers.
func NewRedis(o RedisOptions) (*Redis, error) {
	c, prefix, err := redisclient.New(o)
	if err != nil {
		return nil, fmt.Errorf("consent store: %w", err)
	}
	return &Redis{c: c, prefix: prefix, now: time.Now}, nil
}

// recordScript sets the ref's field to ARGV[3] unless the stored entry's
// time is later than ARGV[2]. KEYS: the org's hash; ARGV: the ref, the
// new entry's time, the new entry. It returns 1 when it set the field, 0
// when a later entry is kept, and an error for a stored entry it cannot
// read (which it leaves alone).
var recordScript = redis.NewScript(`
local old = redis.call('HGET', KEYS[1], ARGV[1])
if old then
  local at = tonumber(string.match(old, '^[12]:([0-9]+):.'))
  if not at then return redis.error_reply('malformed consent entry') end
  if at > tonumber(ARGV[2]) then return 0 end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return 1
`)

// Get implements Store.
func (r *Redis) Get(ctx context.Context, org, ref string) (Entry, error) {
	if err := checkGet(org, ref); err != nil {
		return Entry{}, err
	}
	v, err := r.c.HGet(ctx, r.key(org), ref).Result()
	if errors.Is(err, redis.Nil) {
		return Entry{Org: org, Ref: ref}, nil
	}
	if err != nil {
		return Entry{}, fmt.Errorf("consent store: %w", err)
	}
	return decode(org, ref, v)
}

// Record implements Store.
func (r *Redis) Record(ctx context.Context, e Entry) (bool, error) {
	if err := e.Check(); err != nil {
		return false, err
	}
	at := stamp(e, r.now())
	v := strconv.Itoa(int(e.State)) + ":" + strconv.FormatInt(at, 10) + ":" + e.Source
	n, err := recordScript.Run(ctx, r.c, []string{r.key(e.Org)}, e.Ref, at, v).Int64()
	if err != nil {
		return false, fmt.Errorf("consent store: %w", err)
	}
	if n != 0 && n != 1 {
		return false, fmt.Errorf("consent store: the script answered %d", n)
	}
	return n == 1, nil
}

// List implements Store. It reads the org's whole hash: it is for
// operators, not the path of each message.
func (r *Redis) List(ctx context.Context, org string, limit int) ([]Entry, error) {
	if err := orgid.Check(org); err != nil {
		return nil, err
	}
	all, err := r.c.HGetAll(ctx, r.key(org)).Result()
	if err != nil {
		return nil, fmt.Errorf("consent store: %w", err)
	}
	list := make([]Entry, 0, len(all))
	for ref, v := range all {
		e, err := decode(org, ref, v)
		if err != nil {
			return nil, err
		}
		list = append(list, e)
	}
	return sortAndCut(list, limit), nil
}

// Ping implements Store.
func (r *Redis) Ping(ctx context.Context) error {
	if err := r.c.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("consent store: %w", err)
	}
	return nil
}

// Close implements Store.
func (r *Redis) Close() error { return r.c.Close() }

// key is the hash of org's entries. Org ids hold no ':'.
func (r *Redis) key(org string) string { return r.prefix + "c:" + org }

// errMalformed is a stored value that is not an entry: the store cannot
// tell the number's consent.
var errMalformed = errors.New("consent store: a stored entry is malformed")

// decode reads a stored "STATE:AT:SOURCE" back into an entry, and checks
// it as Record would have.
func decode(org, ref, v string) (Entry, error) {
	state, rest, ok1 := strings.Cut(v, ":")
	at, source, ok2 := strings.Cut(rest, ":")
	s, err1 := strconv.ParseUint(state, 10, 8)
	ms, err2 := strconv.ParseInt(at, 10, 64)
	if !ok1 || !ok2 || err1 != nil || err2 != nil {
		return Entry{}, errMalformed
	}
	e := Entry{Org: org, Ref: ref, State: State(s), At: atTime(ms), Source: source}
	if e.Check() != nil {
		return Entry{}, errMalformed
	}
	return e, nil
}
