using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using System.Net.Http;

namespace Sluice.Policies;

/// <summary>Whether a policy runs on the upgrade request or on every message.</summary>
public enum PolicyKind
{
    /// <summary>Once, on the HTTP upgrade request (an <see cref="IUpgradePolicy"/>).</summary>
    Upgrade,

    /// <summary>On every message (an <see cref="IMessageInterceptor"/>).</summary>
    Message,
}

/// <summary>What a policy factory gets besides the options.</summary>
/// <param name="PolicyName">The policy's name (its key in the gateway file).</param>
/// <param name="Services">The app's services.</param>
/// <param name="BaseDirectory">The folder relative paths in options (schemaFile, file) are resolved against.</param>
public sealed record PolicyCreationContext(string PolicyName, IServiceProvider Services, string? BaseDirectory);

/// <summary>A kind of policy the gateway can create by name from JSON options: built in, or from a plugin.</summary>
public sealed class PolicyType
{
    private readonly Func<object, PolicyCreationContext, object> _factory;

    private PolicyType(string name, PolicyKind kind, Type optionsType, Func<object, PolicyCreationContext, object> factory)
    {
        Name = name;
        Kind = kind;
        OptionsType = optionsType;
        _factory = factory;
    }

    /// <summary>Gets the type's name in the gateway file (<c>size-limit</c>).</summary>
    public string Name { get; }

    /// <summary>Gets whether it is an upgrade or a message policy.</summary>
    public PolicyKind Kind { get; }

    /// <summary>Gets the options class its <c>options</c> bind to (with <see cref="Json.PolicyJson.OptionsBinding"/>).</summary>
    public Type OptionsType { get; }

    /// <summary>Describes a policy type.</summary>
    public static PolicyType Create<TOptions>(string name, PolicyKind kind, Func<TOptions, PolicyCreationContext, object> factory)
        where TOptions : class
    {
        ArgumentNullException.ThrowIfNull(factory);
        return new PolicyType(name, kind, typeof(TOptions), (options, context) => factory((TOptions)options, context));
    }

    /// <summary>Creates a policy: an <see cref="IUpgradePolicy"/> or an <see cref="IMessageInterceptor"/>, as <see cref="Kind"/> says.</summary>
    /// <exception cref="PolicyConfigurationException">The options are invalid.</exception>
    public object Create(object options, PolicyCreationContext context)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(context);
        if (!OptionsType.IsInstanceOfType(options))
        {
            throw new ArgumentException($"Policy type {Name} takes {OptionsType.Name} options.", nameof(options));
        }

        return _factory(options, context);
    }
}

/// <summary>The policy types of the gateway-config contract's table "Built-in policy types".</summary>
public static class BuiltInPolicyTypes
{
    /// <summary>Gets every built-in policy type by name.</summary>
    public static IReadOnlyDictionary<string, PolicyType> All { get; } = new Dictionary<string, PolicyType>(StringComparer.Ordinal)
    {
        ["api-key"] = PolicyType.Create<ApiKeyPolicyOptions>("api-key", PolicyKind.Upgrade, (o, c) => new ApiKeyPolicy(o, c.PolicyName, Time(c))),
        ["jwt"] = PolicyType.Create<JwtPolicyOptions>("jwt", PolicyKind.Upgrade, (o, c) => new JwtPolicy(o, c.Services.GetRequiredService<ILoggerFactory>(), c.PolicyName, Time(c))),
        ["origin"] = PolicyType.Create<OriginPolicyOptions>("origin", PolicyKind.Upgrade, (o, c) => new OriginPolicy(o, c.PolicyName)),
        ["http-auth"] = PolicyType.Create<HttpAuthPolicyOptions>("http-auth", PolicyKind.Upgrade, (o, c) => new HttpAuthPolicy(o, Clients(c), c.Services.GetRequiredService<ILoggerFactory>(), c.PolicyName, Time(c))),
        ["connection-rate-limit"] = PolicyType.Create<ConnectionRateLimitPolicyOptions>("connection-rate-limit", PolicyKind.Upgrade, (o, c) => new ConnectionRateLimitPolicy(o, c.PolicyName, Time(c), c.Services.GetService<IClusterRateLimits>())),
        ["connection-limit"] = PolicyType.Create<ConnectionLimitPolicyOptions>("connection-limit", PolicyKind.Upgrade, (o, c) => new ConnectionLimitPolicy(o, c.PolicyName)),
        ["size-limit"] = PolicyType.Create<SizeLimitPolicyOptions>("size-limit", PolicyKind.Message, (o, c) => new SizeLimitPolicy(o, c.PolicyName)),
        ["rate-limit"] = PolicyType.Create<RateLimitPolicyOptions>("rate-limit", PolicyKind.Message, (o, c) => new RateLimitPolicy(o, c.PolicyName, Time(c), c.Services.GetService<IClusterRateLimits>())),
        ["json-schema"] = PolicyType.Create<JsonSchemaPolicyOptions>("json-schema", PolicyKind.Message, (o, c) => new JsonSchemaPolicy(o, c.PolicyName, c.BaseDirectory)),
        ["json-redact"] = PolicyType.Create<JsonRedactPolicyOptions>("json-redact", PolicyKind.Message, (o, c) => new JsonRedactPolicy(o, c.PolicyName)),
        ["json-filter"] = PolicyType.Create<JsonFilterPolicyOptions>("json-filter", PolicyKind.Message, (o, c) => new JsonFilterPolicy(o, c.PolicyName)),
        ["json-transform"] = PolicyType.Create<JsonTransformPolicyOptions>("json-transform", PolicyKind.Message, (o, c) => new JsonTransformPolicy(o, c.PolicyName)),
        ["log"] = PolicyType.Create<LogPolicyOptions>("log", PolicyKind.Message, (o, c) => new LogPolicy(o, c.Services.GetRequiredService<ILoggerFactory>(), c.PolicyName)),
        ["timer"] = PolicyType.Create<TimerPolicyOptions>("timer", PolicyKind.Message, (o, c) => new TimerPolicy(o, c.PolicyName)),
        ["script"] = PolicyType.Create<ScriptPolicyOptions>("script", PolicyKind.Message, (o, c) => new ScriptPolicy(o, c.PolicyName, c.BaseDirectory)),
    };

    private static IHttpClientFactory Clients(PolicyCreationContext context) =>
        context.Services.GetService<IHttpClientFactory>()
        ?? throw new InvalidOperationException("http-auth needs the HTTP client of services.AddSluiceHttpCallouts()");

    // The app's clock when it registers one (tests register a fake one), the system's otherwise.
    private static TimeProvider Time(PolicyCreationContext context) => context.Services.GetService<TimeProvider>() ?? TimeProvider.System;
}
