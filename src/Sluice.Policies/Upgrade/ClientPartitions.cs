using System.Net;
using System.Net.Sockets;

namespace Sluice.Policies;

/// <summary>The key of an <c>ip</c> partition: what rate limits and connection caps count per client address.</summary>
internal static class ClientPartitions
{
    /// <summary>
    /// An IPv4 address (or one mapped into IPv6) is its own partition; an IPv6 address is grouped with its /64 network.
    /// A single subscriber is usually handed a whole /64 and can pick any of its 2^64 addresses per connection, so a
    /// budget per IPv6 address would not bound that client at all; a /64 is what one site or host gets.
    /// </summary>
    public static string IpKey(IPAddress? address)
    {
        if (address is null)
        {
            return "i:";
        }

        if (address.IsIPv4MappedToIPv6)
        {
            address = address.MapToIPv4();
        }

        if (address.AddressFamily != AddressFamily.InterNetworkV6)
        {
            return "i:" + address;
        }

        Span<byte> bytes = stackalloc byte[16];
        address.TryWriteBytes(bytes, out _);
        bytes[8..].Clear();
        return "i:" + new IPAddress(bytes) + "/64";
    }
}
