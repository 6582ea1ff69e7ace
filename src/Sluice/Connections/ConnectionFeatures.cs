namespace Sluice;

/// <summary>
/// Assigns every feature type a small index the first time it is registered, so a connection finds its
/// feature instance in an array instead of a dictionary.
/// </summary>
internal static class FeatureSlots
{
    private static int s_count;

    public static int Count => Volatile.Read(ref s_count);

    public static int Of<T>() => Slot<T>.Index;

    private static class Slot<T>
    {
        public static readonly int Index = Interlocked.Increment(ref s_count) - 1;
    }
}

/// <summary>The feature factories an endpoint registered, indexed by <see cref="FeatureSlots"/>.</summary>
internal sealed class FeatureFactories
{
    public static readonly FeatureFactories Empty = new([]);

    private readonly Func<WebSocketConnection, object>?[] _bySlot;

    public FeatureFactories(IReadOnlyList<(int Slot, Func<WebSocketConnection, object> Factory)> registrations)
    {
        var size = 0;
        foreach (var (slot, _) in registrations)
        {
            size = Math.Max(size, slot + 1);
        }

        _bySlot = new Func<WebSocketConnection, object>?[size];

        // Later registrations (inner groups, the endpoint itself) win over earlier ones.
        foreach (var (slot, factory) in registrations)
        {
            _bySlot[slot] = factory;
        }
    }

    public Func<WebSocketConnection, object>? Get(int slot) => slot < _bySlot.Length ? _bySlot[slot] : null;
}
