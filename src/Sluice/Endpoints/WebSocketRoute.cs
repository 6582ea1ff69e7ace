using System.Diagnostics;
using System.Net.WebSockets;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Sluice.Diagnostics;
using Sluice.Protocol;

namespace Sluice;

/// <summary>
/// Everything an endpoint's connections share, built once when the endpoint is built: options, the composed
/// pipeline, upgrade steps, hooks, features, and the services they log and count with.
/// </summary>
internal sealed class WebSocketRoute
{
    private MessagePipeline _pipeline;

    public WebSocketRoute(string pattern, WebSocketEndpointOptions options, ComposedConfiguration configuration, IServiceProvider services, string loggerCategory)
    {
        Pattern = pattern;
        Options = options;
        _pipeline = configuration.Pipeline;
        UpgradeSteps = configuration.UpgradeSteps;
        ConnectedHooks = configuration.ConnectedHooks;
        ClosedHooks = configuration.ClosedHooks;
        FaultedHooks = configuration.FaultedHooks;
        Features = configuration.Features;
        Services = services;
        Registry = services.GetRequiredService<WebSocketConnectionRegistry>();
        Topics = services.GetRequiredService<Topics.TopicBus>();
        Metrics = services.GetRequiredService<SluiceMetrics>();
        RouteMetrics = Metrics.ForRoute(pattern);
        Logger = services.GetRequiredService<ILoggerFactory>().CreateLogger(loggerCategory);
        RejectionLog = services.GetRequiredService<RejectionLogThrottle>();
        Time = services.GetService<TimeProvider>() ?? TimeProvider.System;
    }

    /// <summary>The clock of the connection timers: keep-alive, idle timeout, close timeout.</summary>
    public TimeProvider Time { get; }

    public string Pattern { get; }

    public WebSocketEndpointOptions Options { get; }

    /// <summary>Read once per message, so that a replaced pipeline applies from the next message on.</summary>
    public MessagePipeline Pipeline
    {
        get => Volatile.Read(ref _pipeline);
        set => Volatile.Write(ref _pipeline, value);
    }

    public Func<UpgradeContext, ValueTask<UpgradeResult>>[] UpgradeSteps { get; }

    public Func<WebSocketConnection, ValueTask>[] ConnectedHooks { get; }

    public Func<WebSocketConnection, ConnectionCloseInfo, ValueTask>[] ClosedHooks { get; }

    public Func<WebSocketConnection, Exception, ValueTask>[] FaultedHooks { get; }

    public FeatureFactories Features { get; }

    public IServiceProvider Services { get; }

    public WebSocketConnectionRegistry Registry { get; }

    public Topics.TopicBus Topics { get; }

    public SluiceMetrics Metrics { get; }

    public RouteMetrics RouteMetrics { get; }

    public ILogger Logger { get; }

    public RejectionLogThrottle RejectionLog { get; }

    /// <summary>
    /// Checks the handshake, takes a connection place and runs the upgrade steps. Returns null when the
    /// request was answered with an error; otherwise the caller holds a place and must release it.
    /// </summary>
    public async ValueTask<UpgradeContext?> BeginUpgradeAsync(HttpContext httpContext)
    {
        if (ServerHandshake.Validate(httpContext) is { } invalid)
        {
            await RejectAsync(httpContext, invalid.Status, invalid.Message);
            return null;
        }

        if (Registry.IsStopping)
        {
            httpContext.Response.Headers.RetryAfter = "5";
            await RejectAsync(httpContext, StatusCodes.Status503ServiceUnavailable, "The server is shutting down.");
            return null;
        }

        if (!Registry.TryReserve())
        {
            httpContext.Response.Headers.RetryAfter = "5";
            await RejectAsync(
                httpContext,
                StatusCodes.Status503ServiceUnavailable,
                $"The server is at its limit of {Registry.MaxConnections} connections; retry later.",
                static (route, _) => SluiceLog.ConnectionLimitReached(route.Logger, route.Pattern, route.Registry.Count, route.Registry.MaxConnections),
                (object?)null);
            return null;
        }

        var upgrade = new UpgradeContext(httpContext, Pattern);
        try
        {
            foreach (var step in UpgradeSteps)
            {
                var result = await step(upgrade);
                if (result.IsRejected)
                {
                    Registry.ReleaseReservation();
                    upgrade.DisposeRegistered();
                    await RejectAsync(httpContext, result.StatusCode, result.Message);
                    return null;
                }

                if (result.HasData)
                {
                    upgrade.Data = result.Data;
                }
            }
        }
        catch (Exception ex)
        {
            Registry.ReleaseReservation();
            upgrade.DisposeRegistered();
            await RejectAsync(
                httpContext,
                StatusCodes.Status500InternalServerError,
                "The upgrade could not be completed.",
                static (route, ex) => SluiceLog.UpgradeStepFailed(route.Logger, ex, route.Pattern),
                ex);
            return null;
        }

        upgrade.Subject ??= SubjectOf(httpContext);
        return upgrade;
    }

    public Task RejectAsync(HttpContext httpContext, int statusCode, string? message) =>
        RejectAsync(httpContext, statusCode, message, static (_, _) => { }, (object?)null);

    /// <summary>
    /// Answers an upgrade request with an error. Every rejection is counted; the first few of each interval per status
    /// are logged (event 103, after <paramref name="logCause"/>'s own event), the rest summarized (event 111), since
    /// clients choose how many rejections they cause.
    /// </summary>
    public async Task RejectAsync<TState>(HttpContext httpContext, int statusCode, string? message, Action<WebSocketRoute, TState> logCause, TState state)
    {
        if (RejectionLog.TryLog(Logger, Pattern, statusCode))
        {
            logCause(this, state);
            SluiceLog.UpgradeRejected(Logger, Pattern, statusCode, message);
        }

        if (Metrics.UpgradesRejected.Enabled)
        {
            Metrics.UpgradesRejected.Add(1, new TagList { { "route", Pattern }, { "status", statusCode } });
        }

        if (httpContext.Response.HasStarted)
        {
            return;
        }

        httpContext.Response.StatusCode = statusCode;
        if (!string.IsNullOrEmpty(message))
        {
            httpContext.Response.ContentType = "text/plain; charset=utf-8";
            await httpContext.Response.WriteAsync(message + "\n");
        }
    }

    /// <summary>Runs a chain for one message; never throws for an interceptor's failure.</summary>
    public ValueTask RunChainAsync(MessageDelegate chain, MessageContext context)
    {
        var start = Metrics.PipelineDuration.Enabled ? Stopwatch.GetTimestamp() : 0;
        context.ReceivedType = context.Message.Type;
        var previous = Activity.Current;
        var activity = SluiceTracing.StartMessage(context, Pattern);
        ValueTask pending;
        try
        {
            pending = chain(context);
        }
        catch (Exception ex)
        {
            OnChainFailed(context, ex, activity);
            return default;
        }
        finally
        {
            // The chain's own continuations captured the message's activity; the receive loop goes back to the
            // connection's, or a stopped message activity would stay current there.
            if (activity is not null)
            {
                Activity.Current = previous;
            }
        }

        if (pending.IsCompletedSuccessfully)
        {
            pending.GetAwaiter().GetResult();
            OnChainCompleted(context, start, activity);
            return default;
        }

        return AwaitChainAsync(pending, context, start, activity);
    }

    private async ValueTask AwaitChainAsync(ValueTask pending, MessageContext context, long start, Activity? activity)
    {
        try
        {
            await pending;
        }
        catch (Exception ex)
        {
            OnChainFailed(context, ex, activity);
            return;
        }

        OnChainCompleted(context, start, activity);
    }

    private void OnChainCompleted(MessageContext context, long start, Activity? activity)
    {
        if (start != 0)
        {
            Metrics.PipelineDuration.Record(
                Stopwatch.GetElapsedTime(start).TotalSeconds,
                new TagList { { "route", Pattern }, { "direction", SluiceMetrics.DirectionTag(context.Direction) }, { "opcode", context.ReceivedType == MessageType.Text ? "text" : "binary" } });
        }

        if (context.Outcome == MessageOutcome.Forwarded)
        {
            SluiceTracing.EndMessage(activity, context, stoppedBy: null);
            return;
        }

        if (context.Outcome == MessageOutcome.None)
        {
            context.Drop();
        }

        var name = Pipeline.NameOf(context);
        SluiceTracing.EndMessage(activity, context, name);
        Metrics.RecordOutcome(Pattern, context.Direction, name, context.Outcome);
        SluiceLog.MessageStopped(Logger, name, context.Outcome, context.Direction, context.ChainId, context.Connection.Id, Pattern, context.OutcomeReason);
    }

    private void OnChainFailed(MessageContext context, Exception exception, Activity? activity)
    {
        context.MarkFailed();
        var name = Pipeline.NameOf(context);
        SluiceTracing.EndMessage(activity, context, name, exception);
        SluiceLog.InterceptorFailed(Logger, exception, name, context.Direction, context.ChainId, context.Connection.Id, Pattern);
        Metrics.RecordOutcome(Pattern, context.Direction, name, MessageOutcome.Failed);
        if (Options.InterceptorErrorMode == InterceptorErrorMode.CloseConnection)
        {
            context.Connection.BeginClose(WebSocketCloseStatus.InternalServerError, "internal error", ConnectionCloseInitiator.Server);
        }
    }

    public async Task RunConnectedHooksAsync(WebSocketConnection connection)
    {
        foreach (var hook in ConnectedHooks)
        {
            try
            {
                await hook(connection);
            }
            catch (Exception ex)
            {
                SluiceLog.HookFailed(Logger, ex, "connected", connection.Id, Pattern);
            }
        }
    }

    public async Task RunClosedHooksAsync(WebSocketConnection connection, ConnectionCloseInfo info)
    {
        foreach (var hook in ClosedHooks)
        {
            try
            {
                await hook(connection, info);
            }
            catch (Exception ex)
            {
                SluiceLog.HookFailed(Logger, ex, "closed", connection.Id, Pattern);
            }
        }
    }

    public async Task RunFaultedHooksAsync(WebSocketConnection connection, Exception exception)
    {
        foreach (var hook in FaultedHooks)
        {
            try
            {
                await hook(connection, exception);
            }
            catch (Exception ex)
            {
                SluiceLog.HookFailed(Logger, ex, "faulted", connection.Id, Pattern);
            }
        }
    }

    private static string? SubjectOf(HttpContext httpContext)
    {
        // Through the feature: HttpContext.User would create an empty principal for every unauthenticated request.
        var user = httpContext.Features.Get<Microsoft.AspNetCore.Http.Features.Authentication.IHttpAuthenticationFeature>()?.User;
        if (user?.Identity is not { IsAuthenticated: true } identity)
        {
            return null;
        }

        return identity.Name ?? user.FindFirst("sub")?.Value ?? user.FindFirst(System.Security.Claims.ClaimTypes.NameIdentifier)?.Value;
    }
}

/// <summary>The configuration of an endpoint after its groups' and its own builders were merged.</summary>
internal sealed class ComposedConfiguration
{
    public required MessagePipeline Pipeline { get; init; }

    public required Func<UpgradeContext, ValueTask<UpgradeResult>>[] UpgradeSteps { get; init; }

    public required Func<WebSocketConnection, ValueTask>[] ConnectedHooks { get; init; }

    public required Func<WebSocketConnection, ConnectionCloseInfo, ValueTask>[] ClosedHooks { get; init; }

    public required Func<WebSocketConnection, Exception, ValueTask>[] FaultedHooks { get; init; }

    public required FeatureFactories Features { get; init; }

    public required WebSocketEndpointOptions Options { get; init; }

    /// <summary>Merges builders, outermost group first and the endpoint's own last.</summary>
    public static ComposedConfiguration Compose(IReadOnlyList<WebSocketPipelineBuilder> builders, SluiceOptions sluice, IServiceProvider services, string pattern)
    {
        var options = sluice.EndpointDefaults.Clone();
        var interceptors = new List<InterceptorRegistration>();
        var upgrade = new List<Func<UpgradeContext, ValueTask<UpgradeResult>>>();
        var connected = new List<Func<WebSocketConnection, ValueTask>>();
        var closed = new List<Func<WebSocketConnection, ConnectionCloseInfo, ValueTask>>();
        var faulted = new List<Func<WebSocketConnection, Exception, ValueTask>>();
        var features = new List<(int Slot, Func<WebSocketConnection, object> Factory)>(sluice.Features);
        foreach (var builder in builders)
        {
            interceptors.AddRange(builder.Interceptors);
            upgrade.AddRange(builder.UpgradeSteps);
            connected.AddRange(builder.ConnectedHooks);
            closed.AddRange(builder.ClosedHooks);
            faulted.AddRange(builder.FaultedHooks);
            features.AddRange(builder.FeatureRegistrations);
            foreach (var configure in builder.OptionsActions)
            {
                configure(options);
            }
        }

        options.Validate(pattern);
        return new ComposedConfiguration
        {
            Pipeline = MessagePipeline.Build(interceptors, services, fragments: options.Streaming is not null),
            UpgradeSteps = [.. upgrade],
            ConnectedHooks = [.. connected],
            ClosedHooks = [.. closed],
            FaultedHooks = [.. faulted],
            Features = features.Count == 0 ? FeatureFactories.Empty : new FeatureFactories(features),
            Options = options,
        };
    }
}
