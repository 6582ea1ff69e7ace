using System.Net.WebSockets;
using System.Security.Cryptography;
using System.Text;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.Http.Timeouts;
using Microsoft.AspNetCore.Server.Kestrel.Core.Features;
using Microsoft.Extensions.Primitives;
using Microsoft.Net.Http.Headers;

namespace Sluice.Protocol;

/// <summary>
/// The server side of the opening handshake (RFC 6455 4.2, and RFC 8441 for HTTP/2). Sluice performs it
/// itself rather than through <c>HttpContext.WebSockets</c> because it needs the raw stream to run its own
/// framing, and because a proxy must settle the subprotocol with the backend before it answers the client.
/// </summary>
internal static class ServerHandshake
{
    /// <summary>Checks that <paramref name="context"/> is a WebSocket handshake Sluice can accept.</summary>
    /// <returns>Null when it is; otherwise the HTTP status and a one-line explanation.</returns>
    public static (int Status, string Message)? Validate(HttpContext context)
    {
        var headers = context.Request.Headers;
        var connect = context.Features.Get<IHttpExtendedConnectFeature>();
        if (connect is { IsExtendedConnect: true })
        {
            if (!string.Equals(connect.Protocol, "websocket", StringComparison.OrdinalIgnoreCase))
            {
                return (StatusCodes.Status400BadRequest, $"The extended CONNECT protocol '{connect.Protocol}' is not websocket.");
            }
        }
        else
        {
            var upgrade = context.Features.Get<IHttpUpgradeFeature>();
            if (upgrade is not { IsUpgradableRequest: true }
                || !HttpMethods.IsGet(context.Request.Method)
                || !HasToken(headers.Upgrade, "websocket"))
            {
                return (StatusCodes.Status400BadRequest, "This is a WebSocket endpoint: send a WebSocket upgrade request (GET with Upgrade: websocket).");
            }

            if (!IsValidKey(headers.SecWebSocketKey))
            {
                return (StatusCodes.Status400BadRequest, "The Sec-WebSocket-Key header is missing or is not 16 base64-encoded bytes.");
            }
        }

        if (!string.Equals(headers.SecWebSocketVersion, WebSocketProtocol.SupportedVersion, StringComparison.Ordinal))
        {
            // RFC 6455 4.4: answer 426 and name the version we speak.
            context.Response.Headers.SecWebSocketVersion = WebSocketProtocol.SupportedVersion;
            return (StatusCodes.Status426UpgradeRequired, "Unsupported Sec-WebSocket-Version; this server speaks version 13.");
        }

        return null;
    }

    /// <summary>The subprotocols the client offered, in its order of preference.</summary>
    public static List<string> GetOfferedProtocols(HttpContext context)
    {
        var offered = new List<string>();
        foreach (var value in context.Request.Headers.SecWebSocketProtocol)
        {
            foreach (var protocol in (value ?? string.Empty).Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
            {
                offered.Add(protocol);
            }
        }

        return offered;
    }

    /// <summary>Picks the first offer of the client that the server supports, by the server's order of preference.</summary>
    public static string? SelectProtocol(List<string> offered, IList<string> supported)
    {
        foreach (var candidate in supported)
        {
            foreach (var offer in offered)
            {
                if (string.Equals(offer, candidate, StringComparison.Ordinal))
                {
                    return candidate;
                }
            }
        }

        return null;
    }

    /// <summary>Completes the handshake and returns the connection's stream.</summary>
    public static async Task<Stream> AcceptAsync(HttpContext context, string? subProtocol, DeflateNegotiation? deflate)
    {
        // A WebSocket outlives every HTTP request timeout and body limit.
        context.Features.Get<IHttpRequestTimeoutFeature>()?.DisableTimeout();
        if (context.Features.Get<IHttpMinRequestBodyDataRateFeature>() is { } rate)
        {
            rate.MinDataRate = null;
        }

        if (context.Features.Get<IHttpMaxRequestBodySizeFeature>() is { IsReadOnly: false } size)
        {
            size.MaxRequestBodySize = null;
        }

        var response = context.Response;
        if (subProtocol is not null)
        {
            response.Headers.SecWebSocketProtocol = subProtocol;
        }

        if (deflate is not null)
        {
            response.Headers.SecWebSocketExtensions = deflate.ResponseHeader;
        }

        var connect = context.Features.Get<IHttpExtendedConnectFeature>();
        if (connect is { IsExtendedConnect: true })
        {
            response.StatusCode = StatusCodes.Status200OK;
            return await connect.AcceptAsync();
        }

        response.StatusCode = StatusCodes.Status101SwitchingProtocols;
        response.Headers.Connection = HeaderNames.Upgrade;
        response.Headers.Upgrade = "websocket";
        response.Headers.SecWebSocketAccept = ComputeAccept(context.Request.Headers.SecWebSocketKey.ToString());
        return await context.Features.Get<IHttpUpgradeFeature>()!.UpgradeAsync();
    }

    /// <summary>RFC 6455 4.2.2: base64(SHA-1(key + GUID)).</summary>
    public static string ComputeAccept(string key)
    {
        Span<byte> input = stackalloc byte[128];
        var length = Encoding.ASCII.GetBytes(key + WebSocketProtocol.AcceptGuid, input);
        Span<byte> hash = stackalloc byte[SHA1.HashSizeInBytes];
#pragma warning disable CA5350 // RFC 6455 defines the accept value with SHA-1; it is a handshake check, not security.
        SHA1.HashData(input[..length], hash);
#pragma warning restore CA5350
        return Convert.ToBase64String(hash);
    }

    private static bool IsValidKey(StringValues values)
    {
        if (values.Count != 1 || values[0] is not { Length: 24 } key)
        {
            return false;
        }

        Span<byte> decoded = stackalloc byte[18];
        return Convert.TryFromBase64String(key, decoded, out var written) && written == 16;
    }

    internal static bool HasToken(StringValues values, string token)
    {
        foreach (var value in values)
        {
            foreach (var part in (value ?? string.Empty).Split(',', StringSplitOptions.TrimEntries))
            {
                if (string.Equals(part, token, StringComparison.OrdinalIgnoreCase))
                {
                    return true;
                }
            }
        }

        return false;
    }
}

/// <summary>
/// An agreed permessage-deflate configuration (RFC 7692): the parameters for System.Net.WebSockets and the
/// value of the Sec-WebSocket-Extensions header that states them.
/// </summary>
internal sealed class DeflateNegotiation(WebSocketDeflateOptions options, string responseHeader)
{
    public WebSocketDeflateOptions Options { get; } = options;

    public string ResponseHeader { get; } = responseHeader;

    /// <summary>
    /// Accepts the first permessage-deflate offer in <paramref name="extensionsHeader"/> whose parameters are
    /// valid, as a server. Offers Sluice cannot honour (a window of 8 bits, which zlib does not support) are
    /// skipped, as RFC 7692 5.1 allows; then the connection simply goes uncompressed.
    /// </summary>
    public static DeflateNegotiation? AcceptOffer(StringValues extensionsHeader)
    {
        foreach (var header in extensionsHeader)
        {
            foreach (var offer in (header ?? string.Empty).Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
            {
                if (TryAccept(offer) is { } accepted)
                {
                    return accepted;
                }
            }
        }

        return null;
    }

    /// <summary>Parses the server's answer to the offer a client (the proxy's backend leg) made.</summary>
    public static WebSocketDeflateOptions? ParseServerResponse(string? header)
    {
        if (string.IsNullOrWhiteSpace(header))
        {
            return null;
        }

        var parts = header.Split(';', StringSplitOptions.TrimEntries);
        if (!string.Equals(parts[0], "permessage-deflate", StringComparison.OrdinalIgnoreCase))
        {
            throw new WebSocketException(WebSocketError.HeaderError, $"The backend accepted an extension that was not offered: {parts[0]}.");
        }

        var options = new WebSocketDeflateOptions();
        foreach (var parameter in parts.AsSpan(1))
        {
            var (name, value) = Split(parameter);
            switch (name)
            {
                case "server_no_context_takeover":
                    options.ServerContextTakeover = false;
                    break;
                case "client_no_context_takeover":
                    options.ClientContextTakeover = false;
                    break;
                case "server_max_window_bits" when TryBits(value, out var bits):
                    options.ServerMaxWindowBits = bits;
                    break;
                case "client_max_window_bits" when TryBits(value, out var bits):
                    options.ClientMaxWindowBits = bits;
                    break;
                default:
                    throw new WebSocketException(WebSocketError.HeaderError, $"Invalid permessage-deflate parameter from the backend: {parameter}.");
            }
        }

        return options;
    }

    /// <summary>What a client offers: context takeover both ways and the largest windows, as browsers do.</summary>
    public const string ClientOffer = "permessage-deflate; client_max_window_bits";

    private static DeflateNegotiation? TryAccept(string offer)
    {
        var parts = offer.Split(';', StringSplitOptions.TrimEntries);
        if (!string.Equals(parts[0], "permessage-deflate", StringComparison.OrdinalIgnoreCase))
        {
            return null;
        }

        var options = new WebSocketDeflateOptions();
        var response = new StringBuilder("permessage-deflate");
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var parameter in parts.AsSpan(1))
        {
            var (name, value) = Split(parameter);
            if (!seen.Add(name))
            {
                return null;
            }

            switch (name)
            {
                case "server_no_context_takeover" when value is null:
                    options.ServerContextTakeover = false;
                    response.Append("; server_no_context_takeover");
                    break;
                case "client_no_context_takeover" when value is null:
                    options.ClientContextTakeover = false;
                    response.Append("; client_no_context_takeover");
                    break;
                case "server_max_window_bits" when TryBits(value, out var bits):
                    options.ServerMaxWindowBits = bits;
                    response.Append("; server_max_window_bits=").Append(bits);
                    break;
                case "client_max_window_bits" when value is null:
                    // The client can take any window; 15 is the default, so nothing needs saying.
                    break;
                case "client_max_window_bits" when TryBits(value, out var bits):
                    options.ClientMaxWindowBits = bits;
                    response.Append("; client_max_window_bits=").Append(bits);
                    break;
                default:
                    return null;
            }
        }

        return new DeflateNegotiation(options, response.ToString());
    }

    private static (string Name, string? Value) Split(string parameter)
    {
        var equals = parameter.IndexOf('=', StringComparison.Ordinal);
        return equals < 0
            ? (parameter.ToLowerInvariant(), null)
            : (parameter[..equals].Trim().ToLowerInvariant(), parameter[(equals + 1)..].Trim().Trim('"'));
    }

    private static bool TryBits(string? value, out int bits) =>
        int.TryParse(value, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out bits)
        && bits is >= 9 and <= 15;
}
