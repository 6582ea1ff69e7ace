using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Security.Cryptography;

namespace Sluice.Protocol;

/// <summary>
/// RFC 6455 5.3 masking: XOR with a 4-byte key. The key is held as the little-endian read of its four
/// bytes, so that XOR-ing machine words read the same way applies key byte i to data byte i.
/// </summary>
internal static class WebSocketMask
{
    /// <summary>Unmasks (or masks) <paramref name="data"/> in place; <paramref name="data"/>[0] takes key byte 0.</summary>
    public static void Apply(Span<byte> data, uint mask)
    {
        ref var start = ref MemoryMarshal.GetReference(data);
        Apply(ref start, ref start, data.Length, mask);
    }

    /// <summary>Copies <paramref name="source"/> to <paramref name="destination"/>, masking as it goes.</summary>
    public static void CopyAndApply(ReadOnlySpan<byte> source, Span<byte> destination, uint mask)
    {
        if (destination.Length < source.Length)
        {
            throw new ArgumentException("The destination is shorter than the source.", nameof(destination));
        }

        Apply(ref MemoryMarshal.GetReference(source), ref MemoryMarshal.GetReference(destination), source.Length, mask);
    }

    /// <summary>Reads a masking key from the four bytes of a frame header.</summary>
    public static uint ReadKey(ReadOnlySpan<byte> key) => BinaryPrimitives.ReadUInt32LittleEndian(key);

    /// <summary>Writes a masking key into the four bytes of a frame header.</summary>
    public static void WriteKey(Span<byte> destination, uint mask) => BinaryPrimitives.WriteUInt32LittleEndian(destination, mask);

    private static void Apply(ref byte source, ref byte destination, int length, uint mask)
    {
        nuint i = 0;
        var n = (nuint)length;

        // Vectors repeat the key as machine words; that lays its bytes out in order only on little-endian hardware.
        if (BitConverter.IsLittleEndian)
        {
            if (Vector256.IsHardwareAccelerated && n >= (nuint)Vector256<byte>.Count)
            {
                var key = Vector256.Create(mask).AsByte();
                for (; i + (nuint)Vector256<byte>.Count <= n; i += (nuint)Vector256<byte>.Count)
                {
                    (Vector256.LoadUnsafe(ref source, i) ^ key).StoreUnsafe(ref destination, i);
                }
            }

            if (Vector128.IsHardwareAccelerated && i + (nuint)Vector128<byte>.Count <= n)
            {
                var key = Vector128.Create(mask).AsByte();
                for (; i + (nuint)Vector128<byte>.Count <= n; i += (nuint)Vector128<byte>.Count)
                {
                    (Vector128.LoadUnsafe(ref source, i) ^ key).StoreUnsafe(ref destination, i);
                }
            }

            var key8 = mask | ((ulong)mask << 32);
            for (; i + 8 <= n; i += 8)
            {
                var value = Unsafe.ReadUnaligned<ulong>(ref Unsafe.Add(ref source, i));
                Unsafe.WriteUnaligned(ref Unsafe.Add(ref destination, i), value ^ key8);
            }
        }

        // Every loop above advances by a multiple of four, so the key phase here is i & 3.
        for (; i < n; i++)
        {
            Unsafe.Add(ref destination, i) = (byte)(Unsafe.Add(ref source, i) ^ (byte)(mask >> (int)((i & 3) * 8)));
        }
    }
}

/// <summary>
/// Masking keys for frames a client sends. RFC 6455 requires them to be unpredictable, since a hostile
/// payload could otherwise be shaped to look like something else to an intermediary; they come from the
/// system's cryptographic generator, fetched in per-thread blocks so that a key costs a few nanoseconds
/// and an idle connection holds none.
/// </summary>
internal static class MaskKeys
{
    private const int BlockKeys = 64;

    [ThreadStatic]
    private static uint[]? t_keys;

    [ThreadStatic]
    private static int t_next;

    public static uint Next()
    {
        var keys = t_keys ??= new uint[BlockKeys];
        if (t_next == 0)
        {
            RandomNumberGenerator.Fill(MemoryMarshal.AsBytes(keys.AsSpan()));
        }

        var key = keys[t_next];
        t_next = (t_next + 1) % BlockKeys;
        return key;
    }
}
