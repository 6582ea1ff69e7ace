using System.Diagnostics.CodeAnalysis;
using System.Net.WebSockets;
using System.Text;
using System.Text.Encodings.Web;
using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Authentication.JwtBearer;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Microsoft.IdentityModel.Tokens;

namespace Sluice.Policies;

/// <summary>Options of <see cref="JwtPolicy"/> (<c>jwt</c>).</summary>
public sealed class JwtPolicyOptions : IPolicyOptions
{
    /// <summary>Gets or sets the OpenID Connect authority whose signing keys validate tokens. Give this or <see cref="SigningKey"/>.</summary>
    public string? Authority { get; set; }

    /// <summary>
    /// Gets or sets a symmetric key for HS256/384/512: its UTF-8 bytes, <c>base64:...</c> for raw bytes, or
    /// <c>env:NAME</c> to read it from the environment.
    /// </summary>
    public string? SigningKey { get; set; }

    /// <summary>Gets or sets the audience tokens must have (not checked when null).</summary>
    public string? Audience { get; set; }

    /// <summary>Gets or sets the issuer tokens must have (not checked when null).</summary>
    public string? Issuer { get; set; }

    /// <summary>Gets or sets whether a connection is closed with 1008 <c>token expired</c> when its token's <c>exp</c> passes. Default: true.</summary>
    public bool CloseOnExpiry { get; set; } = true;

    /// <summary>Gets or sets the tolerance for clock differences when checking <c>exp</c> and <c>nbf</c>. Default: 0.</summary>
    public double ClockSkewSeconds { get; set; }

    /// <summary>Gets or sets whether the authority's metadata must come over HTTPS. Default: true.</summary>
    public bool RequireHttpsMetadata { get; set; } = true;

    /// <inheritdoc />
    public IEnumerable<PolicyOptionError> Validate()
    {
        if ((Authority is null) == (SigningKey is null))
        {
            yield return new("authority", "give exactly one of authority and signingKey");
        }

        if (SigningKey is { } key)
        {
            string? error = null; // the signingKey problem, if any
            try
            {
                // Microsoft.IdentityModel refuses HMAC keys shorter than the hash (HS256: 32 bytes); a shorter key would
                // make every token fail at runtime, so it is refused here. HS384 and HS512 tokens need 48 and 64 bytes.
                if (JwtPolicy.KeyBytes(key).Length < 32)
                {
                    error = "must be at least 32 bytes (256 bits; 48 for HS384 tokens, 64 for HS512)";
                }
            }
            catch (FormatException)
            {
                error = "the base64: value is not valid base64";
            }
            catch (InvalidOperationException ex)
            {
                error = ex.Message;
            }

            if (error is not null)
            {
                yield return new("signingKey", error);
            }
        }

        if (Authority is not null && !Uri.TryCreate(Authority, UriKind.Absolute, out _))
        {
            yield return new("authority", $"'{Authority}' is not an absolute URL");
        }

        if (ClockSkewSeconds < 0)
        {
            yield return new("clockSkewSeconds", "must not be negative");
        }
    }
}

/// <summary>
/// <c>jwt</c>: the client must present a valid JWT, as a bearer <c>Authorization</c> header or, since browsers
/// cannot set headers on a WebSocket upgrade, an <c>access_token</c> query parameter. Validation is ASP.NET Core's
/// JwtBearer handler, not Sluice's. The token's <c>sub</c> becomes the subject; a missing or invalid token gets
/// 401. With <see cref="JwtPolicyOptions.CloseOnExpiry"/>, the connection is closed with 1008 <c>token expired</c>
/// when the token expires, so a revoked session cannot outlive its token on a long-lived socket.
/// </summary>
public sealed partial class JwtPolicy : IUpgradePolicy
{
    private const string ExpiryItem = "Sluice.Policies.JwtExpiry";
    private static readonly TimeSpan MaxTimerStep = TimeSpan.FromDays(30);

    private readonly AuthenticationScheme _scheme;
    private readonly IOptionsMonitor<JwtBearerOptions> _options;
    private readonly ILoggerFactory _loggerFactory;
    private readonly ILogger _logger;
    private readonly bool _closeOnExpiry;
    private readonly TimeProvider _time;

    /// <summary>Creates the policy.</summary>
    /// <param name="options">The options.</param>
    /// <param name="loggerFactory">Where refused tokens are logged (at debug level).</param>
    /// <param name="name">The policy's name, in logs and the authentication scheme's name.</param>
    /// <param name="timeProvider">
    /// The clock that closes connections when their token expires, also given to ASP.NET Core's JwtBearer handler.
    /// Default: <see cref="TimeProvider.System"/>.
    /// </param>
    public JwtPolicy(JwtPolicyOptions options, ILoggerFactory loggerFactory, string name = "jwt", TimeProvider? timeProvider = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(loggerFactory);
        PolicyValidation.ThrowIfInvalid(options, name);
        Name = name;
        _loggerFactory = loggerFactory;
        _logger = loggerFactory.CreateLogger("Sluice.Policies.Jwt");
        _closeOnExpiry = options.CloseOnExpiry;
        _time = timeProvider ?? TimeProvider.System;
        _scheme = new AuthenticationScheme("Sluice.Jwt." + name, name, typeof(JwtBearerHandler));

        var bearer = new JwtBearerOptions
        {
            Authority = options.Authority,
            Audience = options.Audience,
            RequireHttpsMetadata = options.RequireHttpsMetadata,
            MapInboundClaims = false,
            TimeProvider = _time,
            TokenValidationParameters = new TokenValidationParameters
            {
                ValidateAudience = options.Audience is not null,
                ValidAudience = options.Audience,
                ValidateIssuer = options.Issuer is not null,
                ValidIssuer = options.Issuer,
                ClockSkew = TimeSpan.FromSeconds(options.ClockSkewSeconds),
                NameClaimType = "sub",
            },
            // The challenge says only that the token was refused (error="invalid_token"); why (issuer, expiry, key) is
            // logged, not told to the client, which would learn what to change in a forged or stolen token.
            IncludeErrorDetails = false,
            Events = new JwtBearerEvents
            {
                OnMessageReceived = static context =>
                {
                    // The query is the fallback for browsers, which cannot set headers on a WebSocket upgrade: a request
                    // that carries a bearer header is judged by that header alone, so a refused header token cannot be
                    // rescued by a second token in the URL. Other schemes (a browser's cached Basic credentials) do not
                    // count as a header token.
                    if (!HasBearerHeader(context.Request) && context.Request.Query.TryGetValue("access_token", out var token))
                    {
                        context.Token = token.ToString();
                    }

                    return Task.CompletedTask;
                },
                OnTokenValidated = static context =>
                {
                    // The validated token's own expiry, as IdentityModel read it (fractional and far-future exp
                    // included), rather than a second parse of the claim's text.
                    context.HttpContext.Items[ExpiryItem] = context.SecurityToken.ValidTo;
                    return Task.CompletedTask;
                },
                OnChallenge = static context =>
                {
                    if (context.AuthenticateFailure is not null)
                    {
                        context.Error = "invalid_token";
                        context.ErrorDescription = "the token is not valid";
                    }

                    return Task.CompletedTask;
                },
            },
        };

        if (options.SigningKey is { } key)
        {
            bearer.TokenValidationParameters.IssuerSigningKey = new SymmetricSecurityKey(KeyBytes(key));
            bearer.TokenValidationParameters.ValidAlgorithms = [SecurityAlgorithms.HmacSha256, SecurityAlgorithms.HmacSha384, SecurityAlgorithms.HmacSha512];
        }

        // What AddJwtBearer would do: the post-configuration sets up token handlers and OIDC metadata retrieval.
        new JwtBearerPostConfigureOptions().PostConfigure(_scheme.Name, bearer);
        _options = new FixedOptionsMonitor<JwtBearerOptions>(bearer);
    }

    /// <inheritdoc />
    public string Name { get; }

    /// <inheritdoc />
    public async ValueTask<UpgradeResult> EvaluateAsync(UpgradeContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        var handler = new JwtBearerHandler(_options, _loggerFactory, UrlEncoder.Default);
        await handler.InitializeAsync(_scheme, context.HttpContext);
        var result = await handler.AuthenticateAsync();
        var validTo = context.HttpContext.Items.Remove(ExpiryItem, out var item) && item is DateTime value ? value : DateTime.MinValue;
        if (!result.Succeeded)
        {
            if (result.Failure is { } failure)
            {
                Log.TokenRefused(_logger, Name, failure.Message);
            }

            // The challenge adds WWW-Authenticate: Bearer error="invalid_token" where that applies.
            await handler.ChallengeAsync(null);
            return UpgradeResult.Reject(StatusCodes.Status401Unauthorized, result.Failure is null ? "missing bearer token" : "invalid bearer token");
        }

        var principal = result.Principal!;
        context.HttpContext.User = principal;
        context.Subject = principal.FindFirst("sub")?.Value ?? context.Subject;
        // IdentityModel gives DateTime.MinValue for a token without exp and clamps one beyond year 9999 to
        // DateTime.MaxValue, so every value here is a valid instant.
        if (_closeOnExpiry && validTo != DateTime.MinValue)
        {
            context.Items[ExpiryItem] = new DateTimeOffset(DateTime.SpecifyKind(validTo, DateTimeKind.Utc));
        }

        return UpgradeResult.Continue();
    }

    /// <inheritdoc />
    public ValueTask OnConnectedAsync(WebSocketConnection connection)
    {
        ArgumentNullException.ThrowIfNull(connection);
        if (connection.Items.TryGetValue(ExpiryItem, out var value) && value is DateTimeOffset expiry)
        {
            _ = CloseAtExpiryAsync(connection, expiry);
        }

        return default;
    }

    internal static byte[] KeyBytes(string key)
    {
        if (key.StartsWith("env:", StringComparison.Ordinal))
        {
            key = Environment.GetEnvironmentVariable(key[4..]) is { Length: > 0 } value
                ? value
                : throw new InvalidOperationException($"the environment variable {key[4..]} is not set");
        }

        return key.StartsWith("base64:", StringComparison.Ordinal) ? Convert.FromBase64String(key[7..]) : Encoding.UTF8.GetBytes(key);
    }

    private static bool HasBearerHeader(HttpRequest request)
    {
        foreach (var value in request.Headers.Authorization)
        {
            if (value is not null && value.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase))
            {
                return true;
            }
        }

        return false;
    }

    private async Task CloseAtExpiryAsync(WebSocketConnection connection, DateTimeOffset expiry)
    {
        try
        {
            // Timers take at most about 49.7 days, and a token may be valid until year 9999: wait in steps, so a far
            // expiry neither throws nor closes the connection early.
            for (var wait = expiry - _time.GetUtcNow(); wait > TimeSpan.Zero; wait = expiry - _time.GetUtcNow())
            {
                await Task.Delay(wait < MaxTimerStep ? wait : MaxTimerStep, _time, connection.Closed);
            }

            await connection.CloseAsync(WebSocketCloseStatus.PolicyViolation, "token expired");
        }
        catch (OperationCanceledException)
        {
            // The connection ended before its token expired.
        }
    }

    private sealed class FixedOptionsMonitor<[DynamicallyAccessedMembers(DynamicallyAccessedMemberTypes.PublicParameterlessConstructor)] T>(T value) : IOptionsMonitor<T>
    {
        public T CurrentValue => value;

        public T Get(string? name) => value;

        public IDisposable? OnChange(Action<T, string?> listener) => null;
    }

    private static partial class Log
    {
        // Debug, like the other per-request reasons: the rejection itself is event 103, and a client sending bad
        // tokens must not be able to double the log's volume.
        [LoggerMessage(EventId = 610, Level = LogLevel.Debug, Message = "{Policy}: bearer token refused: {Reason}")]
        public static partial void TokenRefused(ILogger logger, string policy, string reason);
    }
}
