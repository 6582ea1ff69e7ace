using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Sluice.Gateway.Configuration.Model;
using Sluice.Gateway.Integrations;
using Sluice.Gateway.Configuration.Validation;
using Sluice.Gateway.Plugins;
using Sluice.Policies;

namespace Sluice.Gateway.Configuration;

/// <summary>
/// Creates what a validated model describes: the policies (kept from the running configuration when unchanged) and
/// the routes with their handlers. Creating can still fail (a schema file that is missing, a script that does not
/// compile, a plugin whose constructor throws): such failures are errors at the definition's path.
/// </summary>
internal static class GatewayBuilder
{
    public static Dictionary<string, PolicyInstance> CreatePolicies(
        IReadOnlyList<PolicyDefinition> definitions, IServiceProvider services, string baseDirectory, IReadOnlyDictionary<string, PolicyInstance>? previous, ConfigErrors errors)
    {
        var result = new Dictionary<string, PolicyInstance>(StringComparer.Ordinal);
        foreach (var definition in definitions)
        {
            var path = $"policies.{definition.Name}";
            if (previous is not null && previous.TryGetValue(definition.Name, out var running) && running.Fingerprint == definition.Fingerprint)
            {
                result[definition.Name] = running;
                continue;
            }

            try
            {
                var policy = definition.Type.Create(definition.Options, new PolicyCreationContext(definition.Name, services, baseDirectory));
                result[definition.Name] = new PolicyInstance(definition.Name, definition.Type.Kind, policy, definition.When, definition.Fingerprint);
            }
            catch (PolicyConfigurationException ex)
            {
                foreach (var error in ex.OptionErrors)
                {
                    OptionsBinder.AddOptionError($"{path}.options", error, errors);
                }
            }
            catch (Exception ex) when (ex is InvalidOperationException or ArgumentException or FormatException or IOException or System.Reflection.TargetInvocationException)
            {
                errors.Add(path, $"could not be created: {(ex.InnerException ?? ex).Message}");
            }
        }

        return result;
    }

    public static List<RouteConfig> CreateRoutes(IReadOnlyList<RouteModel?> routes, IReadOnlyList<HandlerDefinition?> handlers, LimitsModel limits, IServiceProvider services, ConfigErrors errors)
    {
        var result = new List<RouteConfig>();
        for (var i = 0; i < routes.Count; i++)
        {
            if (routes[i] is not { } route)
            {
                continue;
            }

            result.Add(new RouteConfig
            {
                Index = i,
                Path = route.Path,
                Proxy = route.Proxy,
                Handler = handlers[i] is { } handler ? CreateHandler(handler, $"routes[{i}].handler", limits, services, errors) : null,
                Upgrade = route.Upgrade,
                Inbound = route.Inbound,
                Outbound = route.Outbound,
                Compression = route.Compression,
                Events = route.Events,
                Stream = route.Stream,
            });
        }

        return result;
    }

    private static HandlerRouteConfig? CreateHandler(HandlerDefinition handler, string path, LimitsModel limits, IServiceProvider services, ConfigErrors errors)
    {
        if (handler.Options is HttpRouteSettings http)
        {
            if (services.GetService<IHttpClientFactory>() is not { } clients)
            {
                errors.Add(path, "could not be created: the HTTP client of AddSluiceHttpCallouts is not registered");
                return null;
            }

            var instance = new HttpRouteHandler(http, limits.MaxMessageBytes, clients, services.GetRequiredService<ILoggerFactory>());
            return new HandlerRouteConfig(handler.Type, builder => builder.OnMessage(instance));
        }

        if (handler.BuiltIn is { } builtIn)
        {
            return new HandlerRouteConfig(handler.Type, builder => builtIn.Map(builder, handler.Options), handler.Options);
        }

        try
        {
            var instance = (IMessageHandler)PluginCatalog.Instantiate(handler.PluginType!, handler.Options, handler.Type, services);
            return new HandlerRouteConfig(handler.Type, builder => builder.OnMessage(instance));
        }
        catch (Exception ex) when (ex is InvalidOperationException or ArgumentException or System.Reflection.TargetInvocationException)
        {
            errors.Add(path, $"could not be created: {(ex.InnerException ?? ex).Message}");
            return null;
        }
    }
}
