using Sluice.Gateway.Configuration.Model;
using Sluice.Gateway.Configuration.Validation;
using Sluice.Gateway.Plugins;

namespace Sluice.Gateway.Configuration;

/// <summary>The outcome of loading a configuration file: the configuration, or every error with its JSON path.</summary>
internal sealed record ConfigResult(GatewayConfig? Config, IReadOnlyList<ConfigError> Errors)
{
    public bool IsValid => Config is not null;
}

/// <summary>
/// Loads a gateway configuration file (docs/gateway-contract.md) in four steps: read it into the model
/// (<see cref="ConfigReader"/>, <see cref="ModelReader"/>), check the model (the validators in <see cref="Validation"/>),
/// create its policies and handlers (<see cref="GatewayBuilder"/>), and report every error found on the way, with its
/// JSON path (<see cref="ConfigErrors.InFileOrder"/>).
/// </summary>
internal static class ConfigLoader
{
    /// <param name="path">The configuration file.</param>
    /// <param name="services">Services the policies are created with.</param>
    /// <param name="previous">The running configuration's policies: an unchanged one is kept, with its state (rate-limit budgets).</param>
    public static ConfigResult Load(string path, IServiceProvider services, IReadOnlyDictionary<string, PolicyInstance>? previous = null)
    {
        string text;
        try
        {
            text = File.ReadAllText(path);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return new ConfigResult(null, [new ConfigError(path, $"cannot be read: {ex.Message}")]);
        }

        return Parse(text, Path.GetDirectoryName(Path.GetFullPath(path))!, services, previous);
    }

    public static ConfigResult Parse(string text, string baseDirectory, IServiceProvider services, IReadOnlyDictionary<string, PolicyInstance>? previous = null)
    {
        var errors = new ConfigErrors();
        var file = ConfigReader.Read(text, errors);
        if (file.Model is not { } model)
        {
            return new ConfigResult(null, Ordered(errors, file));
        }

        var limits = model.Limits ?? new LimitsModel();
        var admin = model.Admin ?? new AdminModel();
        var routes = model.Routes ?? [];
        ListenValidator.Validate(model.Listen, model.Tls is not null, errors);
        var now = (services.GetService(typeof(TimeProvider)) as TimeProvider ?? TimeProvider.System).GetUtcNow();
        var certificate = TlsValidator.LoadServer(model.Tls, baseDirectory, now, errors);
        var backendTls = TlsValidator.LoadBackends(routes, baseDirectory, now, errors);
        AdminValidator.Validate(admin, errors);
        if (model.Backplane is { } backplane)
        {
            BackplaneValidator.Validate(backplane, errors);
        }

        var trustedProxies = model.Forwarded is { } forwarded ? ForwardedValidator.Validate(forwarded, errors) : [];
        var plugins = new PluginCatalog(baseDirectory);
        var definitions = PolicyValidator.Validate(model.Policies, plugins, baseDirectory, errors);
        BackplaneValidator.ValidateScopes(definitions, model.Backplane, errors);
        var handlers = RouteValidator.Validate(routes, plugins, errors, limits);
        var policies = GatewayBuilder.CreatePolicies(definitions, services, baseDirectory, previous, errors);
        PolicyReferenceValidator.Validate(routes, policies, errors);
        var routeConfigs = GatewayBuilder.CreateRoutes(routes, handlers, limits, services, errors);
        routeConfigs = [.. routeConfigs.Select(r => r with { BackendTls = backendTls[r.Index] })];

        if (errors.Count > 0)
        {
            DisposeNew(policies.Values, previous);
            return new ConfigResult(null, Ordered(errors, file));
        }

        return new ConfigResult(
            new GatewayConfig
            {
                Listen = model.Listen,
                Tls = model.Tls,
                Certificate = certificate,
                Limits = limits,
                Admin = admin,
                Backplane = model.Backplane,
                TrustedProxies = trustedProxies,
                Routes = routeConfigs,
                Policies = policies,
                BaseDirectory = baseDirectory,
                Secrets = file.Secrets,
            },
            []);
    }

    /// <summary>Disposes the policies of a configuration that will not run, except those it shares with the running one.</summary>
    public static void DisposeNew(IEnumerable<PolicyInstance> created, IReadOnlyDictionary<string, PolicyInstance>? keep)
    {
        foreach (var instance in created)
        {
            if (keep is null || !keep.Values.Any(k => ReferenceEquals(k.Policy, instance.Policy)))
            {
                (instance.Policy as IDisposable)?.Dispose();
            }
        }
    }

    /// <summary>The errors in the order they are shown, values from <c>env:NAME</c> concealed.</summary>
    private static List<ConfigError> Ordered(ConfigErrors errors, ReadFile file) =>
    [
        .. errors.InFileOrder(file.Positions)
            .Select(e => e with { Message = file.Secrets.Conceal(e.Message), Hint = e.Hint is null ? null : file.Secrets.Conceal(e.Hint) }),
    ];
}
