using System.Net;
using System.Net.Sockets;
using Sluice.Gateway.Configuration.Model;

namespace Sluice.Gateway.Configuration.Validation;

/// <summary>Checks <c>forwarded</c> and reads its trusted proxies as networks.</summary>
internal static class ForwardedValidator
{
    /// <returns>The trusted networks (a single address is a /32 or /128), or an empty list when there are errors.</returns>
    public static IReadOnlyList<IPNetwork> Validate(ForwardedModel forwarded, ConfigErrors errors)
    {
        var networks = new List<IPNetwork>();
        var list = forwarded.TrustedProxies;
        if (list.Count == 0)
        {
            errors.Add("forwarded.trustedProxies", "list at least one IP address or CIDR range, or remove forwarded");
        }

        for (var i = 0; i < list.Count; i++)
        {
            if (Parse(list[i], out var network) is { } problem)
            {
                errors.Add($"forwarded.trustedProxies[{i}]", problem);
            }
            else
            {
                networks.Add(network);
            }
        }

        return networks;
    }

    /// <returns>Why the entry is not an address or a range, or null.</returns>
    private static string? Parse(string? entry, out IPNetwork network)
    {
        network = default;
        entry = entry?.Trim();
        // IPAddress.TryParse takes "1" for 0.0.0.1 and "10.1" for 10.0.0.1: only the usual dotted or colon forms count.
        if (string.IsNullOrEmpty(entry) || (!entry.Contains('.', StringComparison.Ordinal) && !entry.Contains(':', StringComparison.Ordinal)))
        {
            return $"'{entry}' is not an IP address or a CIDR range (10.0.0.0/8, 2001:db8::/32)";
        }

        var slash = entry.IndexOf('/', StringComparison.Ordinal);
        if (slash < 0)
        {
            if (!IPAddress.TryParse(entry, out var address) || (address.AddressFamily == AddressFamily.InterNetwork && entry.Count(c => c == '.') != 3))
            {
                return $"'{entry}' is not an IP address or a CIDR range (10.0.0.0/8, 2001:db8::/32)";
            }

            if (address.IsIPv4MappedToIPv6)
            {
                address = address.MapToIPv4();
            }

            network = new IPNetwork(address, address.AddressFamily == AddressFamily.InterNetwork ? 32 : 128);
            return null;
        }

        if (!IPAddress.TryParse(entry.AsSpan(0, slash), out var prefix) || !int.TryParse(entry.AsSpan(slash + 1), out var length)
            || length < 0 || length > (prefix.AddressFamily == AddressFamily.InterNetwork ? 32 : 128))
        {
            return $"'{entry}' is not an IP address or a CIDR range (10.0.0.0/8, 2001:db8::/32)";
        }

        // Bits set after the prefix (10.0.0.1/8) are refused rather than masked: the author may have meant 10.0.0.1 alone.
        var masked = Mask(prefix, length);
        if (!masked.Equals(prefix))
        {
            return $"'{entry}' has bits set after its /{length} prefix: write {masked}/{length}";
        }

        network = new IPNetwork(masked, length);
        return null;
    }

    private static IPAddress Mask(IPAddress address, int length)
    {
        var bytes = address.GetAddressBytes();
        for (var i = 0; i < bytes.Length; i++)
        {
            var keep = Math.Clamp(length - (i * 8), 0, 8);
            bytes[i] &= (byte)(0xFF << (8 - keep));
        }

        return new IPAddress(bytes);
    }
}
