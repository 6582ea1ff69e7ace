using System.Collections.Concurrent;
using System.Net;

namespace Sluice.Gateway.Admin;

/// <summary>
/// Slows down guessing of the admin key: each client address has a bucket of <see cref="Burst"/> failed attempts,
/// refilled by one every <see cref="Refill"/>. While it is empty, every attempt from that address (right or wrong)
/// is answered 429 with <c>Retry-After</c>, so the answer never tells whether a guess was right. Only attempts that
/// present a key count (the login form, a key header); a stale dashboard cookie does not, so a rotated key does not
/// lock its own operator out.
/// </summary>
internal sealed class LoginThrottle(TimeProvider time)
{
    public const int Burst = 5;

    public static readonly TimeSpan Refill = TimeSpan.FromSeconds(10);

    // Bounded: an attacker with many addresses must not grow it without end. Full buckets are the default, so
    // forgetting one loses nothing; when the map is full, it is cleared of every address that is whole again, and
    // if that frees nothing, new addresses share one overflow bucket (guessing from many addresses at once is
    // throttled as one client, not let through).
    private const int MaxTracked = 10_000;

    private readonly ConcurrentDictionary<IPAddress, Bucket> _buckets = new();
    private readonly Bucket _overflow = new(time);

    /// <summary>How long the address must wait before its next attempt; zero when it may try now.</summary>
    public TimeSpan RetryAfter(IPAddress? address)
    {
        if (address is null)
        {
            return TimeSpan.Zero;
        }

        if (!_buckets.TryGetValue(KeyOf(address), out var bucket))
        {
            if (_buckets.Count < MaxTracked)
            {
                return TimeSpan.Zero;
            }

            bucket = _overflow;
        }

        lock (bucket)
        {
            var (tokens, since) = bucket.At(time.GetTimestamp());
            return tokens >= 1 ? TimeSpan.Zero : Refill - since;
        }
    }

    /// <summary>Counts a failed attempt.</summary>
    public void Failed(IPAddress? address)
    {
        if (address is null)
        {
            return;
        }

        var key = KeyOf(address);
        if (_buckets.Count >= MaxTracked && !_buckets.ContainsKey(key))
        {
            Prune();
        }

        var bucket = _buckets.Count < MaxTracked || _buckets.ContainsKey(key) ? _buckets.GetOrAdd(key, _ => new Bucket(time)) : _overflow;
        lock (bucket)
        {
            bucket.Take(time.GetTimestamp());
        }
    }

    /// <summary>An IPv6 client usually holds a whole /64, so its attempts count together; IPv4-mapped addresses are IPv4.</summary>
    private static IPAddress KeyOf(IPAddress address)
    {
        if (address.IsIPv4MappedToIPv6)
        {
            return address.MapToIPv4();
        }

        if (address.AddressFamily != System.Net.Sockets.AddressFamily.InterNetworkV6)
        {
            return address;
        }

        Span<byte> bytes = stackalloc byte[16];
        address.TryWriteBytes(bytes, out _);
        bytes[8..].Clear();
        return new IPAddress(bytes);
    }

    private void Prune()
    {
        var now = time.GetTimestamp();
        foreach (var (address, bucket) in _buckets)
        {
            lock (bucket)
            {
                if (bucket.At(now).Tokens >= Burst)
                {
                    _buckets.TryRemove(address, out _);
                }
            }
        }
    }

    private sealed class Bucket(TimeProvider time)
    {
        private double _tokens = Burst;
        private long _updated = time.GetTimestamp();

        /// <summary>The tokens now, and how long since the last whole token was added.</summary>
        public (double Tokens, TimeSpan Since) At(long now)
        {
            var elapsed = time.GetElapsedTime(_updated, now);
            var tokens = Math.Min(Burst, _tokens + (elapsed / Refill));
            var fraction = tokens - Math.Floor(tokens);
            return (tokens, Refill * fraction);
        }

        public void Take(long now)
        {
            _tokens = Math.Max(0, At(now).Tokens - 1);
            _updated = now;
        }
    }
}
