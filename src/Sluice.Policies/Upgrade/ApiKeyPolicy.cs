using System.Security.Claims;
using System.Security.Cryptography;
using System.Text;
using System.Text.Encodings.Web;
using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Sluice.Policies;

/// <summary>One accepted API key and the subject it authenticates.</summary>
public sealed class ApiKeyEntry
{
    /// <summary>Gets or sets the key, or <c>env:NAME</c> to read it from the environment variable NAME.</summary>
    public string Key { get; set; } = string.Empty;

    /// <summary>Gets or sets the subject a client with this key becomes.</summary>
    public string Subject { get; set; } = string.Empty;

    /// <summary>
    /// Gets or sets when the key stops being accepted (ISO 8601 in JSON). After it the key is refused with 401, and the
    /// connections opened with it are closed with 1008 <c>key expired</c>. Null: it never expires.
    /// </summary>
    public DateTimeOffset? ExpiresAt { get; set; }
}

/// <summary>Options of <see cref="ApiKeyPolicy"/> (<c>api-key</c>) and of the API key authentication scheme.</summary>
public class ApiKeyPolicyOptions : IPolicyOptions
{
    /// <summary>Gets or sets the request header that carries the key. Default: <c>X-Api-Key</c>. Null: none.</summary>
    public string? Header { get; set; } = "X-Api-Key";

    /// <summary>Gets or sets the query parameter that carries the key (browsers cannot set headers on a WebSocket). Null: none.</summary>
    public string? Query { get; set; }

    /// <summary>Gets or sets the accepted keys.</summary>
    public List<ApiKeyEntry> Keys { get; set; } = [];

    /// <inheritdoc />
    public IEnumerable<PolicyOptionError> Validate()
    {
        if (Header is null && Query is null)
        {
            yield return new("header", "give a header, a query parameter or both");
        }

        if (Keys.Count == 0)
        {
            yield return new("keys", "list at least one key");
        }

        for (var i = 0; i < Keys.Count; i++)
        {
            if (string.IsNullOrEmpty(Keys[i].Key))
            {
                yield return new($"keys[{i}].key", "must not be empty");
            }
            else if (Keys[i].Key.StartsWith("env:", StringComparison.Ordinal) && Environment.GetEnvironmentVariable(Keys[i].Key[4..]) is not { Length: > 0 })
            {
                yield return new($"keys[{i}].key", $"the environment variable {Keys[i].Key[4..]} is not set");
            }

            if (string.IsNullOrEmpty(Keys[i].Subject))
            {
                yield return new($"keys[{i}].subject", "must not be empty");
            }
        }
    }
}

/// <summary>
/// Checks API keys in constant time: each key is kept as its SHA-256 hash, a presented key is hashed the same
/// way, and every stored hash is compared, so neither the length nor the position of a match shows in the time.
/// </summary>
internal sealed class ApiKeyValidator
{
    private readonly (byte[] Hash, string Subject, DateTimeOffset? ExpiresAt)[] _keys;
    private readonly string? _header;
    private readonly string? _query;
    private readonly TimeProvider _time;

    public ApiKeyValidator(ApiKeyPolicyOptions options, TimeProvider? time = null)
    {
        _header = options.Header;
        _query = options.Query;
        _time = time ?? TimeProvider.System;
        _keys = [.. options.Keys.Select(k => (SHA256.HashData(Encoding.UTF8.GetBytes(Resolve(k.Key))), k.Subject, k.ExpiresAt))];
    }

    public string? Authenticate(HttpRequest request) => Authenticate(request, out _);

    /// <summary>The subject of the presented key, and when it expires; null when no key, a wrong one or an expired one is presented.</summary>
    public string? Authenticate(HttpRequest request, out DateTimeOffset? expiresAt)
    {
        expiresAt = null;
        var presented = _header is not null && request.Headers.TryGetValue(_header, out var header) ? header.ToString() : null;
        if (string.IsNullOrEmpty(presented) && _query is not null)
        {
            presented = request.Query[_query].ToString();
        }

        if (string.IsNullOrEmpty(presented))
        {
            return null;
        }

        Span<byte> hash = stackalloc byte[SHA256.HashSizeInBytes];
        SHA256.HashData(Encoding.UTF8.GetBytes(presented), hash);
        string? subject = null;
        var now = _time.GetUtcNow();
        foreach (var (stored, candidate, expiry) in _keys)
        {
            // Every key is compared, expired or not, so that the time does not tell which keys have expired.
            if (CryptographicOperations.FixedTimeEquals(stored, hash) && (expiry is null || expiry > now) && subject is null)
            {
                subject = candidate;
                expiresAt = expiry;
            }
        }

        return subject;
    }

    private static string Resolve(string key) =>
        key.StartsWith("env:", StringComparison.Ordinal)
            ? Environment.GetEnvironmentVariable(key[4..]) is { Length: > 0 } value ? value : throw new InvalidOperationException($"The environment variable {key[4..]} is not set.")
            : key;

    public static ClaimsPrincipal Principal(string subject, string authenticationType) =>
        new(new ClaimsIdentity([new Claim(ClaimTypes.Name, subject), new Claim("sub", subject)], authenticationType));
}

/// <summary>
/// <c>api-key</c>: the client must present one of the keys, in a header or a query parameter; its subject
/// becomes the connection's. A missing or wrong key gets 401.
/// </summary>
public sealed class ApiKeyPolicy : IUpgradePolicy
{
    private const string ExpiryItem = "Sluice.Policies.ApiKeyExpiry";
    private static readonly TimeSpan MaxTimerStep = TimeSpan.FromDays(30);

    private readonly ApiKeyValidator _validator;
    private readonly TimeProvider _time;

    /// <summary>Creates the policy.</summary>
    public ApiKeyPolicy(ApiKeyPolicyOptions options, string name = "api-key")
        : this(options, name, null)
    {
    }

    /// <summary>Creates the policy.</summary>
    /// <param name="options">The options.</param>
    /// <param name="name">The policy's name, in logs.</param>
    /// <param name="timeProvider">The clock keys expire by (<see cref="ApiKeyEntry.ExpiresAt"/>). Null: <see cref="TimeProvider.System"/>.</param>
    public ApiKeyPolicy(ApiKeyPolicyOptions options, string name, TimeProvider? timeProvider)
    {
        ArgumentNullException.ThrowIfNull(options);
        PolicyValidation.ThrowIfInvalid(options, name);
        Name = name;
        _time = timeProvider ?? TimeProvider.System;
        _validator = new ApiKeyValidator(options, _time);
    }

    /// <inheritdoc />
    public string Name { get; }

    /// <inheritdoc />
    public ValueTask<UpgradeResult> EvaluateAsync(UpgradeContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        if (_validator.Authenticate(context.HttpContext.Request, out var expiresAt) is not { } subject)
        {
            return new ValueTask<UpgradeResult>(UpgradeResult.Reject(StatusCodes.Status401Unauthorized, "missing or invalid API key"));
        }

        context.Subject = subject;
        context.HttpContext.User = ApiKeyValidator.Principal(subject, "ApiKey");
        if (expiresAt is { } expiry)
        {
            context.Items[ExpiryItem] = expiry;
        }

        return new ValueTask<UpgradeResult>(UpgradeResult.Continue());
    }

    /// <inheritdoc />
    /// <remarks>A connection opened with a key that expires is closed with 1008 <c>key expired</c> when it does.</remarks>
    public ValueTask OnConnectedAsync(WebSocketConnection connection)
    {
        ArgumentNullException.ThrowIfNull(connection);
        if (connection.Items.Remove(ExpiryItem, out var value) && value is DateTimeOffset expiry)
        {
            _ = CloseAtExpiryAsync(connection, expiry);
        }

        return default;
    }

    private async Task CloseAtExpiryAsync(WebSocketConnection connection, DateTimeOffset expiry)
    {
        try
        {
            // Timers take at most about 49.7 days: wait in steps, so a far expiry neither throws nor closes early.
            for (var wait = expiry - _time.GetUtcNow(); wait > TimeSpan.Zero; wait = expiry - _time.GetUtcNow())
            {
                await Task.Delay(wait < MaxTimerStep ? wait : MaxTimerStep, _time, connection.Closed);
            }

            await connection.CloseAsync(System.Net.WebSockets.WebSocketCloseStatus.PolicyViolation, "key expired");
        }
        catch (OperationCanceledException)
        {
            // The connection ended before its key expired.
        }
    }
}

/// <summary>Options of the API key authentication scheme.</summary>
public sealed class ApiKeyAuthenticationOptions : AuthenticationSchemeOptions
{
    /// <summary>Gets the key settings, as for <see cref="ApiKeyPolicy"/>.</summary>
    public ApiKeyPolicyOptions Keys { get; } = new();
}

/// <summary>
/// API keys as an ASP.NET Core authentication scheme, for apps that prefer <c>RequireAuthorization()</c> on the
/// endpoint to a Sluice upgrade policy: <c>services.AddAuthentication().AddApiKey("keys", o => ...)</c>.
/// </summary>
public sealed class ApiKeyAuthenticationHandler(IOptionsMonitor<ApiKeyAuthenticationOptions> options, ILoggerFactory logger, UrlEncoder encoder)
    : AuthenticationHandler<ApiKeyAuthenticationOptions>(options, logger, encoder)
{
    private ApiKeyValidator? _validator;

    /// <inheritdoc />
    protected override Task<AuthenticateResult> HandleAuthenticateAsync()
    {
        _validator ??= new ApiKeyValidator(Options.Keys, Options.TimeProvider);
        return Task.FromResult(_validator.Authenticate(Request) is { } subject
            ? AuthenticateResult.Success(new AuthenticationTicket(ApiKeyValidator.Principal(subject, Scheme.Name), Scheme.Name))
            : AuthenticateResult.NoResult());
    }
}

/// <summary>Registers the API key authentication scheme.</summary>
public static class ApiKeyAuthenticationExtensions
{
    /// <summary>Adds an API key scheme named <paramref name="scheme"/>.</summary>
    public static AuthenticationBuilder AddApiKey(this AuthenticationBuilder builder, string scheme, Action<ApiKeyPolicyOptions> configure)
    {
        ArgumentNullException.ThrowIfNull(builder);
        ArgumentNullException.ThrowIfNull(configure);
        return builder.AddScheme<ApiKeyAuthenticationOptions, ApiKeyAuthenticationHandler>(scheme, options => configure(options.Keys));
    }
}
