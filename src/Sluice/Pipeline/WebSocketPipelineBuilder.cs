using System.Diagnostics.CodeAnalysis;
using Microsoft.Extensions.DependencyInjection;

namespace Sluice;

/// <summary>
/// Configures what every connection of an endpoint, or of every endpoint in a route group, goes through:
/// upgrade steps, message interceptors in both directions, lifecycle hooks, connection features and options.
/// </summary>
/// <remarks>
/// Everything is composed once, when the endpoint is built. A group's configuration applies before the
/// endpoint's own, and an outer group's before an inner one's.
/// </remarks>
public class WebSocketPipelineBuilder
{
    internal WebSocketPipelineBuilder()
    {
    }

    internal List<InterceptorRegistration> Interceptors { get; } = [];

    internal List<Func<UpgradeContext, ValueTask<UpgradeResult>>> UpgradeSteps { get; } = [];

    internal List<Func<WebSocketConnection, ValueTask>> ConnectedHooks { get; } = [];

    internal List<Func<WebSocketConnection, ConnectionCloseInfo, ValueTask>> ClosedHooks { get; } = [];

    internal List<Func<WebSocketConnection, Exception, ValueTask>> FaultedHooks { get; } = [];

    internal List<(int Slot, Func<WebSocketConnection, object> Factory)> FeatureRegistrations { get; } = [];

    internal List<Action<WebSocketEndpointOptions>> OptionsActions { get; } = [];

    /// <summary>Adds a class interceptor, created once through dependency injection when the endpoint is built.</summary>
    public InterceptorRegistration Use<[DynamicallyAccessedMembers(DynamicallyAccessedMemberTypes.PublicConstructors)] TInterceptor>()
        where TInterceptor : class, IMessageInterceptor =>
        Add(typeof(TInterceptor).Name, services =>
            new ClassInterceptorLayer(ActivatorUtilities.GetServiceOrCreateInstance<TInterceptor>(services)), direction: null);

    /// <summary>Adds a class interceptor instance.</summary>
    public InterceptorRegistration Use(IMessageInterceptor interceptor)
    {
        ArgumentNullException.ThrowIfNull(interceptor);
        return Add(interceptor.GetType().Name, _ => new ClassInterceptorLayer(interceptor), direction: null);
    }

    /// <summary>
    /// Adds a set of interceptors that can be replaced while connections are open (<see cref="ReloadableInterceptors.Reload"/>).
    /// </summary>
    public InterceptorRegistration Use(ReloadableInterceptors interceptors)
    {
        ArgumentNullException.ThrowIfNull(interceptors);
        return Add("reloadable", interceptors.CreateLayer, direction: null);
    }

    /// <summary>
    /// Adds a middleware lambda that runs in both directions (check <see cref="MessageContext.Direction"/>, or
    /// limit it with <see cref="InterceptorRegistration.InboundOnly"/>): await <c>next(context)</c> to forward.
    /// </summary>
    public InterceptorRegistration Use(Func<MessageContext, MessageDelegate, ValueTask> middleware)
    {
        ArgumentNullException.ThrowIfNull(middleware);
        return Add("middleware", _ => new MiddlewareLayer(middleware), direction: null);
    }

    /// <summary>Adds a synchronous step: return true to go on, false to stop the message.</summary>
    public InterceptorRegistration Use(Func<MessageContext, bool> step)
    {
        ArgumentNullException.ThrowIfNull(step);
        return Add("step", _ => new StepLayer(step), direction: null);
    }

    /// <summary>Adds an asynchronous step: return true to go on, false to stop the message.</summary>
    public InterceptorRegistration Use(Func<MessageContext, ValueTask<bool>> step)
    {
        ArgumentNullException.ThrowIfNull(step);
        return Add("step", _ => new AsyncStepLayer(step), direction: null);
    }

    /// <summary>
    /// Adds a transform of messages from the client: return the message, changed or not, to
    /// forward it, or null to drop it.
    /// </summary>
    public InterceptorRegistration Inbound(Func<WebSocketMessage, WebSocketMessage?> transform)
    {
        ArgumentNullException.ThrowIfNull(transform);
        return Add("transform", _ => new TransformLayer((message, _) => transform(message)), MessageDirection.Inbound);
    }

    /// <summary>Adds a transform of messages from the client that also sees the message context.</summary>
    public InterceptorRegistration Inbound(Func<WebSocketMessage, MessageContext, WebSocketMessage?> transform)
    {
        ArgumentNullException.ThrowIfNull(transform);
        return Add("transform", _ => new TransformLayer(transform), MessageDirection.Inbound);
    }

    /// <summary>Adds an asynchronous transform of messages from the client.</summary>
    public InterceptorRegistration Inbound(Func<WebSocketMessage, MessageContext, ValueTask<WebSocketMessage?>> transform)
    {
        ArgumentNullException.ThrowIfNull(transform);
        return Add("transform", _ => new AsyncTransformLayer(transform), MessageDirection.Inbound);
    }

    /// <summary>Adds a transform of messages to the client: return the message to forward it, or null to drop it.</summary>
    public InterceptorRegistration Outbound(Func<WebSocketMessage, WebSocketMessage?> transform)
    {
        ArgumentNullException.ThrowIfNull(transform);
        return Add("transform", _ => new TransformLayer((message, _) => transform(message)), MessageDirection.Outbound);
    }

    /// <summary>Adds a transform of messages to the client that also sees the message context.</summary>
    public InterceptorRegistration Outbound(Func<WebSocketMessage, MessageContext, WebSocketMessage?> transform)
    {
        ArgumentNullException.ThrowIfNull(transform);
        return Add("transform", _ => new TransformLayer(transform), MessageDirection.Outbound);
    }

    /// <summary>Adds an asynchronous transform of messages to the client.</summary>
    public InterceptorRegistration Outbound(Func<WebSocketMessage, MessageContext, ValueTask<WebSocketMessage?>> transform)
    {
        ArgumentNullException.ThrowIfNull(transform);
        return Add("transform", _ => new AsyncTransformLayer(transform), MessageDirection.Outbound);
    }

    /// <summary>
    /// Adds a synchronous upgrade step, run on the HTTP upgrade request before any WebSocket exists: return
    /// <see cref="UpgradeResult.Continue(object?)"/> to pass data on, or <see cref="UpgradeResult.Reject"/>.
    /// </summary>
    public WebSocketPipelineBuilder UseUpgrade(Func<UpgradeContext, UpgradeResult> step)
    {
        ArgumentNullException.ThrowIfNull(step);
        UpgradeSteps.Add(context => new ValueTask<UpgradeResult>(step(context)));
        return this;
    }

    /// <summary>Adds an asynchronous upgrade step. Steps of both kinds run in the order added.</summary>
    public WebSocketPipelineBuilder UseUpgrade(Func<UpgradeContext, ValueTask<UpgradeResult>> step)
    {
        ArgumentNullException.ThrowIfNull(step);
        UpgradeSteps.Add(step);
        return this;
    }

    /// <summary>Runs <paramref name="hook"/> when a connection has been accepted, before its first message.</summary>
    public WebSocketPipelineBuilder OnConnected(Action<WebSocketConnection> hook)
    {
        ArgumentNullException.ThrowIfNull(hook);
        ConnectedHooks.Add(connection =>
        {
            hook(connection);
            return default;
        });
        return this;
    }

    /// <summary>Runs <paramref name="hook"/> when a connection has been accepted, before its first message.</summary>
    public WebSocketPipelineBuilder OnConnected(Func<WebSocketConnection, ValueTask> hook)
    {
        ArgumentNullException.ThrowIfNull(hook);
        ConnectedHooks.Add(hook);
        return this;
    }

    /// <summary>Runs <paramref name="hook"/> once a connection has ended, with its close status and who closed it.</summary>
    public WebSocketPipelineBuilder OnClosed(Action<WebSocketConnection, ConnectionCloseInfo> hook)
    {
        ArgumentNullException.ThrowIfNull(hook);
        ClosedHooks.Add((connection, info) =>
        {
            hook(connection, info);
            return default;
        });
        return this;
    }

    /// <summary>Runs <paramref name="hook"/> once a connection has ended, with its close status and who closed it.</summary>
    public WebSocketPipelineBuilder OnClosed(Func<WebSocketConnection, ConnectionCloseInfo, ValueTask> hook)
    {
        ArgumentNullException.ThrowIfNull(hook);
        ClosedHooks.Add(hook);
        return this;
    }

    /// <summary>
    /// Runs <paramref name="hook"/> when a connection fails: a peer broke the protocol, a socket error, a hook
    /// threw. <see cref="OnClosed(Action{WebSocketConnection, ConnectionCloseInfo})"/> still runs afterwards.
    /// </summary>
    public WebSocketPipelineBuilder OnFaulted(Action<WebSocketConnection, Exception> hook)
    {
        ArgumentNullException.ThrowIfNull(hook);
        FaultedHooks.Add((connection, exception) =>
        {
            hook(connection, exception);
            return default;
        });
        return this;
    }

    /// <summary>Runs <paramref name="hook"/> when a connection fails.</summary>
    public WebSocketPipelineBuilder OnFaulted(Func<WebSocketConnection, Exception, ValueTask> hook)
    {
        ArgumentNullException.ThrowIfNull(hook);
        FaultedHooks.Add(hook);
        return this;
    }

    /// <summary>
    /// Registers a per-connection feature: <c>connection.Feature&lt;TFeature&gt;()</c>
    /// creates it with <paramref name="factory"/> on first use and returns the same instance afterwards.
    /// A connection that never asks pays nothing. Disposable features are disposed when the connection ends.
    /// </summary>
    public WebSocketPipelineBuilder AddFeature<TFeature>(Func<WebSocketConnection, TFeature> factory)
        where TFeature : class
    {
        ArgumentNullException.ThrowIfNull(factory);
        FeatureRegistrations.Add((FeatureSlots.Of<TFeature>(), factory));
        return this;
    }

    /// <summary>Changes the endpoint options; runs after the application defaults and any outer group's changes.</summary>
    public WebSocketPipelineBuilder ConfigureOptions(Action<WebSocketEndpointOptions> configure)
    {
        ArgumentNullException.ThrowIfNull(configure);
        OptionsActions.Add(configure);
        return this;
    }

    private InterceptorRegistration Add(string name, Func<IServiceProvider, InterceptorLayer> factory, MessageDirection? direction)
    {
        var registration = new InterceptorRegistration(name, factory, direction);
        Interceptors.Add(registration);
        return registration;
    }
}
