package session

import (
	"context"
	"fmt"
	"log"

	"github.com/redis/go-redis/v9"

	"github.com/phiguard/phiguard/internal/redisclient"
)

// Redis is a Store in a Redis server that every replica shares, so a
// logoff or a revocation seen by one is seen by all. Each use is one
// round trip: a script that decides and records atomically. Every error
// (unreachable, timeout, a server that refuses) is returned: the caller
// refuses the request.
//
// Keys, under the prefix: s:REF (a hash: first, last use, revoked; kept
// Limits.Keep past the last use), ro:ORG, ru:ORG:USER and rU:USER (a
// revocation's time in milliseconds, kept Revocation.Keep). Times are
// Unix milliseconds.
type Redis struct {
	c      *redis.Client
	prefix string
}

// RedisOptions configure a Redis store.
type RedisOptions = redisclient.Options

// DefaultRedisTimeout bounds each Redis command.
const DefaultRedisTimeout = redisclient.DefaultTimeout

// NewRedis returns a store over the server o names. It does not connect
// until first used; Ping tells whether it answers.
func NewRedis(o RedisOptions) (*Redis, error) {
	c, prefix, err := redisclient.New(o)
	if err != nil {
		return nil, fmt.Errorf("session store: %w", err)
	}
	return &Redis{c: c, prefix: prefix}, nil
}

// useScript decides a use: the rule of judge, in Lua. KEYS: the session,
// the org's, the org user's and the user's revocations. ARGV: now, the
// credential's start (0: none), idle, absolute, keep; milliseconds.
// It returns the Verdict.
var useScript = redis.NewScript(`
local now = tonumber(ARGV[1])
local s = redis.call('HMGET', KEYS[1], 'first', 'last', 'revoked')
if s[3] then return 3 end
local first = tonumber(s[1])
local last = tonumber(s[2])
local start = now
local claimed = tonumber(ARGV[2])
if claimed > 0 and claimed < start then start = claimed end
if first and first < start then start = first end
local rev = redis.call('MGET', KEYS[2], KEYS[3], KEYS[4])
for i = 1, 3 do
  local at = tonumber(rev[i])
  if at and start <= at then return 3 end
end
local absolute = tonumber(ARGV[4])
if absolute > 0 and now - start >= absolute then return 2 end
local idle = tonumber(ARGV[3])
if idle > 0 and last and now - last >= idle then return 1 end
if not last or now > last then last = now end
redis.call('HSET', KEYS[1], 'first', start, 'last', last)
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return 0
`)

// markScript records a revocation unless a later one is there, and keeps
// the key at least ARGV[2] milliseconds.
var markScript = redis.NewScript(`
local at = tonumber(ARGV[1])
local old = tonumber(redis.call('GET', KEYS[1]))
if not old or at > old then
  redis.call('SET', KEYS[1], at)
end
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
`)

// revokeScript marks one session revoked, kept at least ARGV[1] ms.
var revokeScript = redis.NewScript(`
redis.call('HSET', KEYS[1], 'revoked', 1)
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
return 0
`)

// Use implements Store.
func (r *Redis) Use(ctx context.Context, u Use) (Verdict, error) {
	var claimed int64
	if !u.Start.IsZero() {
		claimed = max(u.Start.UnixMilli(), 1)
	}
	keys := []string{r.prefix + "s:" + u.Ref, r.prefix + orgKey(u.Org), r.prefix + orgUserKey(u.Org, u.User), r.prefix + userKey(u.User)}
	n, err := useScript.Run(ctx, r.c, keys, u.Now.UnixMilli(), claimed, u.Limits.Idle.Milliseconds(), u.Limits.Absolute.Milliseconds(), u.Limits.Keep().Milliseconds()).Int64()
	if err != nil {
		return 0, fmt.Errorf("session store: %w", err)
	}
	if n < int64(Live) || n > int64(Revoked) {
		return 0, fmt.Errorf("session store: the script answered %d", n)
	}
	return Verdict(n), nil
}

// Revoke implements Store.
func (r *Redis) Revoke(ctx context.Context, rv Revocation) error {
	if err := rv.Check(); err != nil {
		return err
	}
	keep := rv.Keep.Milliseconds()
	var err error
	if rv.Ref != "" {
		err = revokeScript.Run(ctx, r.c, []string{r.prefix + "s:" + rv.Ref}, keep).Err()
	} else {
		err = markScript.Run(ctx, r.c, []string{r.prefix + revocationKey(rv.Org, rv.User)}, rv.At.UnixMilli(), keep).Err()
	}
	if err != nil {
		return fmt.Errorf("session store: %w", err)
	}
	return nil
}

// Ping implements Store.
func (r *Redis) Ping(ctx context.Context) error {
	if err := r.c.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("session store: %w", err)
	}
	return nil
}

// Close implements Store.
func (r *Redis) Close() error { return r.c.Close() }

// Revocation keys. Org ids hold no ':'.
func orgKey(org string) string           { return "ro:" + org }
func orgUserKey(org, user string) string { return "ru:" + org + ":" + user }
func userKey(user string) string         { return "rU:" + user }

func revocationKey(org, user string) string {
	switch {
	case user == "":
		return orgKey(org)
	case org == "":
		return userKey(user)
	}
	return orgUserKey(org, user)
}

// SetLibraryLog sends go-redis's own log lines (a pool that cannot dial)
// to l, for the whole process.
func SetLibraryLog(l *log.Logger) { redis.SetLogger(printfLogger{l}) }

type printfLogger struct{ l *log.Logger }

func (p printfLogger) Printf(_ context.Context, format string, v ...any) { p.l.Printf(format, v...) }
