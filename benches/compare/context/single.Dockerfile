# Ten steps after FROM, one stage: the shape of a typical application image.
FROM busybox
ENV APP_HOME=/app
WORKDIR /app
COPY files/ /app/files/
RUN echo one >/app/one
RUN for i in $(seq 1 200); do echo "$i" >/app/n$i; done
ARG FLAVOUR=plain
RUN mkdir -p /data && cp -r /app/files /data/ && echo "$FLAVOUR" >/data/flavour
COPY script.sh /usr/local/bin/script.sh
RUN chmod +x /usr/local/bin/script.sh && /usr/local/bin/script.sh
LABEL org.example.bench=single
CMD ["sh"]
