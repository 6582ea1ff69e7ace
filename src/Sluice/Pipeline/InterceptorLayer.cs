using System.Reflection;

namespace Sluice;

/// <summary>
/// One registered interceptor, able to wrap the rest of a chain. Each form (class, middleware lambda,
/// step, transform) becomes one closure per direction when the chain is built, so running it costs a
/// delegate call and no allocation.
/// </summary>
internal abstract class InterceptorLayer
{
    public virtual bool HandlesInbound => true;

    public virtual bool HandlesOutbound => true;

    public abstract MessageDelegate Wrap(MessageDirection direction, MessageDelegate next, int index);

    /// <summary>
    /// The control frames the layer takes part in whatever its registration says: a reloadable set, whose own
    /// interceptors opt in or not, takes part in all of them.
    /// </summary>
    public virtual ControlFrames InnerControlFrames => ControlFrames.None;

    /// <summary>Wraps the rest of a chain of control frames; the same closure as for data messages unless the layer composes inner chains.</summary>
    public virtual MessageDelegate WrapControl(MessageDirection direction, MessageDelegate next, int index) => Wrap(direction, next, index);

    /// <summary>Whether the layer holds interceptors of its own that decide about fragments (a reloadable set).</summary>
    public virtual bool IsContainer => false;

    /// <summary>Wraps the chain that fragments of streamed messages run through; the same as <see cref="Wrap"/> but for containers.</summary>
    public virtual MessageDelegate WrapFragments(MessageDirection direction, MessageDelegate next, int index) => Wrap(direction, next, index);
}

internal sealed class ClassInterceptorLayer : InterceptorLayer
{
    private static readonly MethodInfo s_inbound = typeof(IMessageInterceptor).GetMethod(nameof(IMessageInterceptor.InboundAsync))!;
    private static readonly MethodInfo s_outbound = typeof(IMessageInterceptor).GetMethod(nameof(IMessageInterceptor.OutboundAsync))!;

    private readonly IMessageInterceptor _interceptor;

    public ClassInterceptorLayer(IMessageInterceptor interceptor)
    {
        _interceptor = interceptor;

        // A method the class leaves to the interface's default only calls next: leave it out of the chain.
        var map = interceptor.GetType().GetInterfaceMap(typeof(IMessageInterceptor));
        for (var i = 0; i < map.InterfaceMethods.Length; i++)
        {
            var implemented = map.TargetMethods[i].DeclaringType != typeof(IMessageInterceptor);
            if (map.InterfaceMethods[i] == s_inbound)
            {
                HandlesInbound = implemented;
            }
            else if (map.InterfaceMethods[i] == s_outbound)
            {
                HandlesOutbound = implemented;
            }
        }
    }

    public override bool HandlesInbound { get; }

    public override bool HandlesOutbound { get; }

    public override MessageDelegate Wrap(MessageDirection direction, MessageDelegate next, int index)
    {
        var interceptor = _interceptor;
        return direction == MessageDirection.Inbound
            ? context =>
            {
                context.Layer = index;
                return interceptor.InboundAsync(context, next);
            }
            : context =>
            {
                context.Layer = index;
                return interceptor.OutboundAsync(context, next);
            };
    }
}

internal sealed class MiddlewareLayer(Func<MessageContext, MessageDelegate, ValueTask> middleware) : InterceptorLayer
{
    public override MessageDelegate Wrap(MessageDirection direction, MessageDelegate next, int index) =>
        context =>
        {
            context.Layer = index;
            return middleware(context, next);
        };
}

internal sealed class StepLayer(Func<MessageContext, bool> step) : InterceptorLayer
{
    public override MessageDelegate Wrap(MessageDirection direction, MessageDelegate next, int index) =>
        context =>
        {
            context.Layer = index;
            if (step(context))
            {
                return next(context);
            }

            // Said at once, so that an interceptor around this one sees the outcome when next returns.
            context.Drop();
            return default;
        };
}

internal sealed class AsyncStepLayer(Func<MessageContext, ValueTask<bool>> step) : InterceptorLayer
{
    public override MessageDelegate Wrap(MessageDirection direction, MessageDelegate next, int index) =>
        context =>
        {
            context.Layer = index;
            var result = step(context);
            if (result.IsCompletedSuccessfully)
            {
                if (result.Result)
                {
                    return next(context);
                }

                context.Drop();
                return default;
            }

            return AwaitStep(result, context, next);
        };

    private static async ValueTask AwaitStep(ValueTask<bool> result, MessageContext context, MessageDelegate next)
    {
        if (await result)
        {
            await next(context);
        }
        else
        {
            context.Drop();
        }
    }
}

internal sealed class TransformLayer(Func<WebSocketMessage, MessageContext, WebSocketMessage?> transform) : InterceptorLayer
{
    public override MessageDelegate Wrap(MessageDirection direction, MessageDelegate next, int index) =>
        context =>
        {
            context.Layer = index;
            var message = context.Message;
            var result = transform(message, context);
            if (result is null)
            {
                context.Drop();
                return default;
            }

            if (!ReferenceEquals(result, message))
            {
                context.Message = result;
            }

            return next(context);
        };
}

internal sealed class AsyncTransformLayer(Func<WebSocketMessage, MessageContext, ValueTask<WebSocketMessage?>> transform) : InterceptorLayer
{
    public override MessageDelegate Wrap(MessageDirection direction, MessageDelegate next, int index) =>
        context =>
        {
            context.Layer = index;
            var message = context.Message;
            var pending = transform(message, context);
            if (!pending.IsCompletedSuccessfully)
            {
                return AwaitTransform(pending, message, context, next);
            }

            var result = pending.Result;
            if (result is null)
            {
                context.Drop();
                return default;
            }

            if (!ReferenceEquals(result, message))
            {
                context.Message = result;
            }

            return next(context);
        };

    private static async ValueTask AwaitTransform(
        ValueTask<WebSocketMessage?> pending, WebSocketMessage original, MessageContext context, MessageDelegate next)
    {
        var result = await pending;
        if (result is null)
        {
            context.Drop();
            return;
        }

        if (!ReferenceEquals(result, original))
        {
            context.Message = result;
        }

        await next(context);
    }
}
