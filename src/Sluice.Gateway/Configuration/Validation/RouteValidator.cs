using Microsoft.AspNetCore.Routing.Patterns;
using Sluice.Gateway.Configuration.Model;
using Sluice.Gateway.Integrations;
using Sluice.Gateway.Plugins;
using Sluice.Proxy;

namespace Sluice.Gateway.Configuration.Validation;

/// <summary>A route's handler, resolved: a built-in one with its options, or a plugin type with its options.</summary>
internal sealed record HandlerDefinition(string Type, HandlerType? BuiltIn, Type? PluginType, object? Options);

/// <summary>Checks <c>routes</c>: paths, proxy or handler, targets, forwarded headers; resolves each handler.</summary>
internal static class RouteValidator
{
    private static readonly string[] s_loadBalancing = ["round-robin", "least-connections", "random", "hash"];

    /// <returns>Each route's resolved handler (null for a proxy route or a handler with errors), by index.</returns>
    public static IReadOnlyList<HandlerDefinition?> Validate(IReadOnlyList<RouteModel?> routes, PluginCatalog plugins, ConfigErrors errors, LimitsModel? limits = null)
    {
        limits ??= new LimitsModel();
        var handlers = new HandlerDefinition?[routes.Count];
        var seen = new Dictionary<string, int>(StringComparer.OrdinalIgnoreCase);
        for (var i = 0; i < routes.Count; i++)
        {
            if (routes[i] is not { } route)
            {
                continue;
            }

            var path = $"routes[{i}]";
            // A missing path (or type, or target) is read as "" and already reported at its path: a second error
            // there is not recorded, so the checks below need not test for it.
            ValidatePath(route.Path, $"{path}.path", errors);
            if (seen.TryGetValue(route.Path, out var first))
            {
                errors.Add($"{path}.path", $"'{route.Path}' is already the path of routes[{first}]");
            }
            else
            {
                seen[route.Path] = i;
            }

            if ((route.Proxy is null) == (route.Handler is null))
            {
                errors.Add(path, route.Proxy is not null ? "has both proxy and handler; give exactly one" : "has neither proxy nor handler; give exactly one");
            }

            if (route.Proxy is { } proxy)
            {
                ValidateProxy(proxy, $"{path}.proxy", route.Path, errors);
            }

            if (route.Handler is { } handler)
            {
                handlers[i] = ResolveHandler(handler, $"{path}.handler", plugins, errors);
            }

            if (route.Events is { } events)
            {
                ValidateEvents(events, $"{path}.events", errors);
            }

            if (route.Stream is { } stream)
            {
                ValidateStream(stream, $"{path}.stream", limits, errors);
                if (route.Handler is not null)
                {
                    // The built-in handlers (echo, pubsub, plugins) answer whole messages; a fragment is not one.
                    errors.Add($"{path}.stream", "applies to proxy routes only: a handler receives whole messages");
                }
            }
        }

        return handlers;
    }

    private static void ValidatePath(string routePath, string path, ConfigErrors errors)
    {
        if (!routePath.StartsWith('/'))
        {
            errors.Add(path, $"'{routePath}' must start with '/'");
            return;
        }

        try
        {
            RoutePatternFactory.Parse(routePath);
        }
        catch (RoutePatternException ex)
        {
            errors.Add(path, $"'{routePath}' is not a route template: {ex.Message}");
        }
    }

    private static void ValidateStream(StreamModel stream, string path, LimitsModel limits, ConfigErrors errors)
    {
        // Binary messages up to aboveBytes are still held whole: beyond limits.maxMessageBytes that would raise the memory
        // a connection may hold, which is what streaming is for keeping low.
        if (stream.AboveBytes > limits.MaxMessageBytes)
        {
            errors.Add($"{path}.aboveBytes", $"must be at most limits.maxMessageBytes ({limits.MaxMessageBytes}): binary messages up to aboveBytes are held whole");
        }

        if (stream.MaxBytes < stream.AboveBytes)
        {
            errors.Add($"{path}.maxBytes", $"must be at least aboveBytes ({stream.AboveBytes})");
        }
    }

    private static void ValidateProxy(ProxyModel proxy, string path, string routePath, ConfigErrors errors)
    {
        if ((proxy.Target is null) == (proxy.Targets is null))
        {
            errors.Add(path, proxy.Target is null ? "has neither target nor targets; give exactly one" : "has both target and targets; give exactly one");
        }

        // Without a route path the target's parameters cannot be checked; the missing path is reported.
        if (routePath.Length > 0 && proxy.Target is { } target && !WebSocketProxyTarget.TryParse(target, routePath, out _, out var error))
        {
            errors.Add($"{path}.target", error);
        }

        var targets = proxy.Targets ?? [];
        for (var i = 0; i < targets.Count; i++)
        {
            if (routePath.Length > 0 && !WebSocketProxyTarget.TryParse(targets[i], routePath, out _, out var targetError))
            {
                errors.Add($"{path}.targets[{i}]", targetError);
            }
        }

        if (Array.IndexOf(s_loadBalancing, proxy.LoadBalancing) < 0)
        {
            errors.Add($"{path}.loadBalancing", $"'{proxy.LoadBalancing}' is not a load balancing mode (use {string.Join(", ", s_loadBalancing)})", ConfigError.DidYouMean(proxy.LoadBalancing, s_loadBalancing));
        }
        else if (proxy.LoadBalancing == "hash" && proxy.HashBy is null)
        {
            errors.Add($"{path}.hashBy", "is required for loadBalancing hash: a rewrite expression such as ${subject}");
        }

        if (proxy.HashBy is { } hashBy)
        {
            if (proxy.LoadBalancing != "hash")
            {
                errors.Add($"{path}.hashBy", $"applies only to loadBalancing hash (this proxy's is {proxy.LoadBalancing})");
            }
            else if (routePath.Length > 0 && CheckHashBy(hashBy, routePath) is { } hashError)
            {
                errors.Add($"{path}.hashBy", hashError);
            }
        }

        if (proxy.HealthCheck is { } check)
        {
            if (check.Path is { } checkPath && (!checkPath.StartsWith('/') || checkPath.AsSpan().IndexOfAny("\r\n ") >= 0))
            {
                errors.Add($"{path}.healthCheck.path", $"'{checkPath}' must start with '/' and hold no spaces or line breaks");
            }
        }

        for (var i = 0; i < proxy.ForwardHeaders.Count; i++)
        {
            if (!WebSocketProxyHeaders.CanForward(proxy.ForwardHeaders[i]))
            {
                errors.Add($"{path}.forwardHeaders[{i}]", $"'{proxy.ForwardHeaders[i]}' belongs to one hop's handshake or is set by the gateway itself; it cannot be forwarded");
            }
        }
    }

    private static void ValidateEvents(EventsModel events, string path, ConfigErrors errors)
    {
        // A missing url is read as "" and already reported.
        if (events.Url.Length > 0 && !IsHttpUrl(events.Url))
        {
            errors.Add($"{path}.url", $"'{events.Url}' is not an absolute http:// or https:// URL");
        }

        if (events.On.Count == 0)
        {
            errors.Add($"{path}.on", "list at least one event: connect, disconnect");
        }

        for (var i = 0; i < events.On.Count; i++)
        {
            if (events.On[i] is not (LifecycleEvents.Connect or LifecycleEvents.Disconnect))
            {
                errors.Add($"{path}.on[{i}]", $"unknown event '{events.On[i]}' (events: connect, disconnect)");
            }
        }
    }

    private static bool IsHttpUrl(string url) =>
        Uri.TryCreate(url, UriKind.Absolute, out var uri) && (uri.Scheme == Uri.UriSchemeHttp || uri.Scheme == Uri.UriSchemeHttps);

    /// <summary>Checks a <c>hashBy</c> expression against a route's parameters; returns why it is invalid, or null.</summary>
    private static string? CheckHashBy(string hashBy, string routePath)
    {
        try
        {
            // The pool parses hashBy exactly as it will at run time; a throwaway one (nothing started) checks it.
            var pool = new BackendPool(routePath, ["ws://127.0.0.1/"], new BackendPoolOptions { LoadBalancing = BackendLoadBalancing.Hash, HashBy = hashBy });
            pool.DisposeAsync().AsTask().GetAwaiter().GetResult();
            return null;
        }
        catch (FormatException ex)
        {
            return ex.Message;
        }
    }

    private static HandlerDefinition? ResolveHandler(HandlerModel handler, string path, PluginCatalog plugins, ConfigErrors errors)
    {
        var type = handler.Type;
        if (type == HttpRouteHandler.TypeName)
        {
            return ResolveHttpHandler(handler, path, errors);
        }

        foreach (var (key, value) in new (string Key, object? Value)[] { ("url", handler.Url), ("timeoutMs", handler.TimeoutMs), ("maxConcurrentRequests", handler.MaxConcurrentRequests) })
        {
            if (value is not null)
            {
                errors.Add($"{path}.{key}", $"only the http handler takes {key}");
            }
        }
        if (BuiltInHandlers.All.TryGetValue(type, out var builtIn))
        {
            if (builtIn.OptionsType is null)
            {
                if (handler.Options is not null)
                {
                    errors.Add($"{path}.options", $"the {type} handler takes no options");
                    return null;
                }

                return new HandlerDefinition(type, builtIn, null, null);
            }

            var before = errors.Count;
            var options = handler.Options is null ? null : new ModelReader(errors).Read(handler.Options, builtIn.OptionsType, $"{path}.options");
            if (options is PubSubHandlerOptions pubsub)
            {
                PubSubPermissions.Validate(pubsub, $"{path}.options", errors);
            }

            return errors.Count == before ? new HandlerDefinition(type, builtIn, null, options) : null;
        }

        if (!PluginCatalog.IsTypeName(type))
        {
            errors.Add($"{path}.type", $"unknown handler '{type}' (built-in: {string.Join(", ", BuiltInHandlers.All.Keys)}, {HttpRouteHandler.TypeName}; or a plugin type 'Namespace.Type, Assembly')");
            return null;
        }

        var handlerType = plugins.Find(type, out var error);
        if (handlerType is null || !typeof(IMessageHandler).IsAssignableFrom(handlerType))
        {
            errors.Add($"{path}.type", error ?? $"'{type}' does not implement Sluice.IMessageHandler");
            return null;
        }

        var optionsType = PluginCatalog.OptionsTypeOf(handlerType);
        object? pluginOptions = null;
        if (optionsType is not null)
        {
            pluginOptions = OptionsBinder.Bind(handler.Options ?? new System.Text.Json.Nodes.JsonObject(), optionsType, $"{path}.options", errors);
        }
        else if (handler.Options is not null and not System.Text.Json.Nodes.JsonObject { Count: 0 })
        {
            errors.Add($"{path}.options", "this handler takes no options");
        }

        return new HandlerDefinition(type, null, handlerType, pluginOptions);
    }

    private static HandlerDefinition? ResolveHttpHandler(HandlerModel handler, string path, ConfigErrors errors)
    {
        var before = errors.Count;
        if (handler.Options is not null)
        {
            errors.Add($"{path}.options", "the http handler takes no options: give url, timeoutMs and maxConcurrentRequests beside type");
        }

        if (handler.Url is null)
        {
            errors.Add($"{path}.url", "is required for the http handler: the URL each message is POSTed to");
        }
        else if (!IsHttpUrl(handler.Url))
        {
            errors.Add($"{path}.url", $"'{handler.Url}' is not an absolute http:// or https:// URL");
        }

        return errors.Count == before
            ? new HandlerDefinition(HttpRouteHandler.TypeName, null, null, new HttpRouteSettings(new Uri(handler.Url!), handler.TimeoutMs ?? 5000, handler.MaxConcurrentRequests ?? 64))
            : null;
    }
}
