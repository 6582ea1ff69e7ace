using System.Text;

namespace Sluice.Proxy;

/// <summary>
/// Orders a pool's healthy targets for one connection: the first is the one to try, the rest are the failover order.
/// The shape of YARP's ILoadBalancingPolicy (pick among the available destinations), extended to an order because a
/// WebSocket proxy fails over at connect time.
/// </summary>
internal abstract class LoadBalancingPolicy
{
    public static LoadBalancingPolicy Create(BackendLoadBalancing mode) => mode switch
    {
        BackendLoadBalancing.LeastConnections => new LeastConnectionsPolicy(),
        BackendLoadBalancing.Random => new RandomPolicy(),
        BackendLoadBalancing.Hash => new HashPolicy(),
        _ => new RoundRobinPolicy(),
    };

    /// <summary>Orders <paramref name="healthy"/> (not empty) in place; <paramref name="key"/> is the hashBy value.</summary>
    public abstract void Order(BackendTarget[] healthy, string? key);

    /// <summary>Starts at <paramref name="first"/> and keeps the others in their configured, cyclic order.</summary>
    protected static void Rotate(BackendTarget[] targets, int first)
    {
        if (first > 0)
        {
            targets.AsSpan(0, first).Reverse();
            targets.AsSpan(first).Reverse();
            targets.AsSpan().Reverse();
        }
    }

    private sealed class RoundRobinPolicy : LoadBalancingPolicy
    {
        private uint _counter;

        public override void Order(BackendTarget[] healthy, string? key) =>
            Rotate(healthy, (int)((Interlocked.Increment(ref _counter) - 1) % (uint)healthy.Length));
    }

    private sealed class LeastConnectionsPolicy : LoadBalancingPolicy
    {
        private uint _counter;

        public override void Order(BackendTarget[] healthy, string? key)
        {
            // Ties are scanned from a moving start, so equally loaded targets take turns instead of the first taking all.
            var start = (int)((Interlocked.Increment(ref _counter) - 1) % (uint)healthy.Length);
            var best = start;
            for (var i = 1; i < healthy.Length; i++)
            {
                var candidate = (start + i) % healthy.Length;
                if (healthy[candidate].OpenConnections < healthy[best].OpenConnections)
                {
                    best = candidate;
                }
            }

            Rotate(healthy, best);
        }
    }

    private sealed class RandomPolicy : LoadBalancingPolicy
    {
        public override void Order(BackendTarget[] healthy, string? key) => Rotate(healthy, System.Random.Shared.Next(healthy.Length));
    }

    /// <summary>
    /// Rendezvous (highest random weight) hashing: each target gets a score from the key and the target's own pattern,
    /// and targets are tried by falling score. When a target becomes unhealthy, only the keys it ranked first move (to
    /// their second choice); when it comes back, those keys return to it; keys of other targets never move. The hash
    /// is FNV-1a, the same in every process and run, unlike string.GetHashCode.
    /// </summary>
    private sealed class HashPolicy : LoadBalancingPolicy
    {
        public override void Order(BackendTarget[] healthy, string? key)
        {
            var keyHash = Fnv1a(key ?? string.Empty);
            var scores = new ulong[healthy.Length];
            for (var i = 0; i < healthy.Length; i++)
            {
                scores[i] = Mix(keyHash ^ Fnv1a(healthy[i].Template.Pattern) ^ (ulong)healthy[i].Index);
            }

            // Highest score first; ties (identical patterns) by configured position.
            Array.Sort(scores, healthy, Comparer<ulong>.Create((a, b) => b.CompareTo(a)));
        }

        internal static ulong Fnv1a(string value)
        {
            var hash = 14695981039346656037UL;
            foreach (var b in Encoding.UTF8.GetBytes(value))
            {
                hash = (hash ^ b) * 1099511628211UL;
            }

            return hash;
        }

        /// <summary>SplitMix64's finalizer: spreads the combined bits so that close inputs get unrelated scores.</summary>
        private static ulong Mix(ulong z)
        {
            z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
            z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
            return z ^ (z >> 31);
        }
    }
}
